// Package docker is the Docker workload attestor, as SPIRE's "docker"
// plugin: it finds the caller's container ID in /proc/<pid>/cgroup,
// inspects the container through the Docker Engine API on its Unix socket
// (GET /containers/<id>/json, the API version negotiated with GET /_ping
// unless pinned) and returns "docker" selectors: label:<key>:<value> for
// every label, env:<NAME>=<value> for every environment variable and
// image_id:<image> with the image the container was created from (its
// Config.Image, as SPIRE). A process not in a container gets no
// selectors. Podman's Docker-compatible service answers the same API.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/internal/container"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// SelectorType is the type of every selector this attestor produces.
const SelectorType = "docker"

const (
	// DefaultSocketPath is the Docker daemon's socket, as SPIRE's
	// docker_socket_path default.
	DefaultSocketPath = "unix:///var/run/docker.sock"
	// maxAPIVersion is the newest Engine API version this client speaks;
	// negotiation picks the daemon's if older.
	maxAPIVersion = "1.47"
	// fallbackAPIVersion is used when the daemon announces none, as the
	// Docker client does.
	fallbackAPIVersion = "1.24"
	// Inspection is tried once and retried this many times, the waits
	// doubling from initialBackoff, as SPIRE's.
	retries        = 3
	initialBackoff = 100 * time.Millisecond
	requestTimeout = 10 * time.Second
	maxInspectSize = 4 << 20
)

var (
	// ErrEngine is wrapped by the errors of a failed Engine API call.
	ErrEngine = errors.New("docker: engine API")
	// ErrNoSuchContainer is returned when the engine does not know the
	// caller's container (it belongs to another runtime, or is gone).
	ErrNoSuchContainer = errors.New("docker: no such container")
	apiVersion         = regexp.MustCompile(`^1\.[0-9]{1,3}$`)
)

// Config configures an Attestor.
type Config struct {
	// SocketPath is the daemon's socket as a unix:// URL (default
	// DefaultSocketPath).
	SocketPath string
	// Version pins the Engine API version ("1.41"); empty negotiates it.
	Version string
	// ProcRoot is the proc file system (default /proc).
	ProcRoot string
	Clock    clock.Clock
	Logger   *slog.Logger
}

// Attestor produces docker selectors for a process. It is safe for
// concurrent use.
type Attestor struct {
	cfg    Config
	socket string
	clk    clock.Clock
	log    *slog.Logger
	client *http.Client
}

// New checks cfg and returns an Attestor.
func New(cfg Config) (*Attestor, error) {
	if cfg.SocketPath == "" {
		cfg.SocketPath = DefaultSocketPath
	}
	u, err := url.Parse(cfg.SocketPath)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return nil, fmt.Errorf("docker: docker_socket_path %q is not a unix:///path URL", cfg.SocketPath)
	}
	if cfg.Version != "" && !apiVersion.MatchString(strings.TrimPrefix(cfg.Version, "v")) {
		return nil, fmt.Errorf("docker: docker_version %q is not an Engine API version (1.41)", cfg.Version)
	}
	cfg.Version = strings.TrimPrefix(cfg.Version, "v")
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	socket := u.Path
	a := &Attestor{cfg: cfg, socket: socket, clk: clock.Or(cfg.Clock), log: log}
	a.client = &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
	return a, nil
}

// Attest returns the docker selectors of the process pid: none when it is
// not in a container.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	where, err := container.Locate(a.cfg.ProcRoot, pid)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	if where.ContainerID == "" {
		return nil, nil
	}
	var c inspect
	backoff := initialBackoff
	for attempt := 0; ; attempt++ {
		c, err = a.inspect(ctx, where.ContainerID)
		if err == nil {
			break
		}
		if attempt == retries {
			return nil, err
		}
		a.log.DebugContext(ctx, "docker: container inspection failed; retrying",
			slog.String("container_id", where.ContainerID), slog.Any("error", err))
		if !clock.Sleep(ctx, a.clk, backoff) {
			return nil, fmt.Errorf("docker: %w", ctx.Err())
		}
		backoff *= 2
	}
	var sel []*types.Selector
	for _, v := range c.selectors() {
		sel = append(sel, &types.Selector{Type: SelectorType, Value: v})
	}
	return sel, nil
}

// inspect is the part of GET /containers/<id>/json the selectors read.
type inspect struct {
	ID     string `json:"Id"`
	Config *struct {
		Labels map[string]string `json:"Labels"`
		Env    []string          `json:"Env"`
		Image  string            `json:"Image"`
	} `json:"Config"`
}

func (c *inspect) selectors() []string {
	if c.Config == nil {
		return nil
	}
	keys := make([]string, 0, len(c.Config.Labels))
	for k := range c.Config.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var v []string
	for _, k := range keys {
		v = append(v, "label:"+k+":"+c.Config.Labels[k])
	}
	for _, e := range c.Config.Env {
		v = append(v, "env:"+e)
	}
	if c.Config.Image != "" {
		v = append(v, "image_id:"+c.Config.Image)
	}
	return v
}

func parseInspect(b []byte, id string) (inspect, error) {
	var c inspect
	if err := json.Unmarshal(b, &c); err != nil {
		return inspect{}, fmt.Errorf("%w: container %s: %w", ErrEngine, id, err)
	}
	if c.ID != id {
		return inspect{}, fmt.Errorf("%w: asked for container %s, got %q", ErrEngine, id, c.ID)
	}
	return c, nil
}

func (a *Attestor) inspect(ctx context.Context, id string) (inspect, error) {
	version, err := a.version(ctx)
	if err != nil {
		return inspect{}, err
	}
	resp, err := a.get(ctx, "/v"+version+"/containers/"+id+"/json")
	if err != nil {
		return inspect{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInspectSize+1))
	switch {
	case err != nil:
		return inspect{}, fmt.Errorf("%w: container %s: %w", ErrEngine, id, err)
	case len(b) > maxInspectSize:
		return inspect{}, fmt.Errorf("%w: container %s: answer over %d bytes", ErrEngine, id, maxInspectSize)
	case resp.StatusCode == http.StatusNotFound:
		return inspect{}, fmt.Errorf("%w %s: %s", ErrNoSuchContainer, id, message(b))
	case resp.StatusCode != http.StatusOK:
		return inspect{}, fmt.Errorf("%w: container %s: %s: %s", ErrEngine, id, resp.Status, message(b))
	}
	return parseInspect(b, id)
}

// version returns the pinned API version, or negotiates one: the older
// of the daemon's (GET /_ping's API-Version header) and this client's.
func (a *Attestor) version(ctx context.Context) (string, error) {
	if a.cfg.Version != "" {
		return a.cfg.Version, nil
	}
	resp, err := a.get(ctx, "/_ping")
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	v := resp.Header.Get("API-Version")
	if !apiVersion.MatchString(v) {
		return fallbackAPIVersion, nil
	}
	if minor(v) > minor(maxAPIVersion) {
		return maxAPIVersion, nil
	}
	return v, nil
}

func minor(v string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(v, "1."))
	return n
}

func (a *Attestor) get(ctx context.Context, path string) (*http.Response, error) {
	// The host is a placeholder: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEngine, err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s on %s: %w", ErrEngine, path, a.socket, err)
	}
	return resp, nil
}

// message returns the Engine API's error message ({"message": ...}).
func message(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(b[:min(len(b), 256)]))
}
