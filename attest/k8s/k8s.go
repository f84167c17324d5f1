// Package k8s is the Kubernetes workload attestor, as SPIRE's "k8s"
// plugin: it finds the caller's container (and pod, when the cgroups say)
// from /proc/<pid>/cgroup, looks the container up in the pod list of the
// node's kubelet (GET /pods on the secure port with a service account
// token or a client certificate, or on the read-only port) and returns
// "k8s" selectors describing the pod and the container: ns, sa,
// node-name, pod-uid, pod-name, pod-label, pod-owner, pod-owner-uid,
// pod-image, pod-image-count, pod-init-image, pod-init-image-count,
// container-name, container-image. A process not in a container gets no
// selectors; one in a container that the kubelet does not list is
// retried a bounded number of times (the kubelet lists a container a
// moment after it starts), then refused with ErrContainerNotFound.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/internal/container"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	corev1 "k8s.io/api/core/v1"
)

// SelectorType is the type of every selector this attestor produces.
const SelectorType = "k8s"

// Defaults, as SPIRE's.
const (
	DefaultSecurePort        = 10250
	DefaultMaxPollAttempts   = 60
	DefaultPollRetryInterval = 500 * time.Millisecond
	DefaultReloadInterval    = time.Minute
	DefaultKubeletCAPath     = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultTokenPath         = "/var/run/secrets/kubernetes.io/serviceaccount/token" //nolint:gosec // a path
)

var (
	// ErrContainerNotFound is returned when the caller is in a container
	// that no pod of the kubelet's list holds, after every poll attempt.
	ErrContainerNotFound = errors.New("k8s: no pod of the kubelet holds the workload's container")
	// ErrAmbiguous is returned when two pods list the caller's container.
	ErrAmbiguous = errors.New("k8s: two pods hold the workload's container")
)

// Config configures an Attestor. Zero fields take SPIRE's defaults.
type Config struct {
	// ReadOnlyPort, when set, makes the attestor read the kubelet's
	// unauthenticated read-only port on 127.0.0.1 instead of the secure
	// port (mutually exclusive with SecurePort).
	ReadOnlyPort int
	// SecurePort is the kubelet's HTTPS port (default 10250).
	SecurePort int
	// NodeName is the kubelet's host name, which its serving certificate
	// must name; empty: 127.0.0.1, the certificate's chain is verified
	// but not its names.
	NodeName string
	// SkipKubeletVerification accepts any kubelet certificate.
	SkipKubeletVerification bool
	// KubeletCAPath holds the CA certificates of the kubelet's serving
	// certificate (default DefaultKubeletCAPath).
	KubeletCAPath string
	// TokenPath holds the bearer token (default DefaultTokenPath), used
	// unless a client certificate or anonymous authentication is set.
	TokenPath string
	// CertificatePath and PrivateKeyPath are a client certificate and
	// its key, instead of the token.
	CertificatePath, PrivateKeyPath string
	// UseAnonymousAuthentication sends no credentials.
	UseAnonymousAuthentication bool
	// MaxPollAttempts bounds the pod list fetches for one attestation
	// (default 60); PollRetryInterval is the wait between them (default
	// 500ms).
	MaxPollAttempts   int
	PollRetryInterval time.Duration
	// ReloadInterval is how often the token, CA and client certificate
	// are read again (default 1m).
	ReloadInterval time.Duration
	// DisableContainerSelectors omits container-name and
	// container-image, and lets a pod known from the cgroups be attested
	// before its container is listed.
	DisableContainerSelectors bool
	// ProcRoot is the proc file system (default /proc).
	ProcRoot string
	Clock    clock.Clock
	Logger   *slog.Logger
}

// Attestor produces k8s selectors for a process. It is safe for
// concurrent use.
type Attestor struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger

	mu      sync.Mutex // serializes kubelet fetches; guards the fields below
	kubelet *kubelet
	cached  []corev1.Pod
	until   time.Time // the cached pod list is fresh before this
}

// New checks cfg and returns an Attestor. The credentials are loaded at
// the first attestation (and every ReloadInterval), as the kubelet may
// start after the agent.
func New(cfg Config) (*Attestor, error) {
	if cfg.ReadOnlyPort > 0 && cfg.SecurePort > 0 {
		return nil, errors.New("k8s: kubelet_read_only_port and kubelet_secure_port are mutually exclusive")
	}
	if cfg.ReadOnlyPort < 0 || cfg.SecurePort < 0 || cfg.ReadOnlyPort > 65535 || cfg.SecurePort > 65535 {
		return nil, fmt.Errorf("k8s: kubelet port out of range")
	}
	if (cfg.CertificatePath == "") != (cfg.PrivateKeyPath == "") {
		return nil, errors.New("k8s: certificate_path and private_key_path go together")
	}
	if cfg.UseAnonymousAuthentication && (cfg.CertificatePath != "" || cfg.TokenPath != "") {
		return nil, errors.New("k8s: use_anonymous_authentication excludes token_path, certificate_path and private_key_path")
	}
	if cfg.SecurePort == 0 && cfg.ReadOnlyPort == 0 {
		cfg.SecurePort = DefaultSecurePort
	}
	if cfg.MaxPollAttempts <= 0 {
		cfg.MaxPollAttempts = DefaultMaxPollAttempts
	}
	if cfg.PollRetryInterval <= 0 {
		cfg.PollRetryInterval = DefaultPollRetryInterval
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = DefaultReloadInterval
	}
	if cfg.KubeletCAPath == "" {
		cfg.KubeletCAPath = DefaultKubeletCAPath
	}
	if cfg.TokenPath == "" {
		cfg.TokenPath = DefaultTokenPath
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{cfg: cfg, clk: clock.Or(cfg.Clock), log: log}, nil
}

// Attest returns the k8s selectors of the process pid: none when it is
// not in a container.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	where, err := container.Locate(a.cfg.ProcRoot, pid)
	if err != nil {
		return nil, fmt.Errorf("k8s: %w", err)
	}
	if where.ContainerID == "" {
		return nil, nil
	}
	log := a.log.With(slog.String("pod_uid", where.PodUID), slog.String("container_id", where.ContainerID))
	for attempt := 1; ; attempt++ {
		pods, err := a.pods(ctx)
		if err != nil {
			return nil, err
		}
		values, err := a.match(pods, where)
		if err != nil {
			return nil, err
		}
		if values != nil {
			sel := make([]*types.Selector, len(values))
			for i, v := range values {
				sel[i] = &types.Selector{Type: SelectorType, Value: v}
			}
			return sel, nil
		}
		if attempt >= a.cfg.MaxPollAttempts {
			log.WarnContext(ctx, "k8s: container not listed by the kubelet; giving up", slog.Int("attempts", attempt))
			return nil, fmt.Errorf("%w (%d attempts)", ErrContainerNotFound, attempt)
		}
		log.DebugContext(ctx, "k8s: container not listed by the kubelet yet", slog.Int("attempt", attempt))
		if !clock.Sleep(ctx, a.clk, a.cfg.PollRetryInterval) {
			return nil, fmt.Errorf("k8s: waiting for the kubelet to list the container: %w", ctx.Err())
		}
	}
}

// match returns the selector values of the pod holding the container
// (nil if none does).
func (a *Attestor) match(pods []corev1.Pod, where container.Info) ([]string, error) {
	var out []string
	for i := range pods {
		p := &pods[i]
		if where.PodUID != "" && string(p.UID) != where.PodUID {
			continue
		}
		var values []string
		cs, found := containerStatus(p, where.ContainerID)
		switch {
		case found:
			values = podSelectors(p)
			if !a.cfg.DisableContainerSelectors {
				values = append(values, containerSelectors(cs)...)
			}
		case where.PodUID != "" && a.cfg.DisableContainerSelectors:
			values = podSelectors(p)
		}
		if values == nil {
			continue
		}
		if out != nil {
			return nil, ErrAmbiguous
		}
		out = values
	}
	return out, nil
}

// pods returns the kubelet's pod list, fetched at most once per half
// poll interval (concurrent attestations share a fetch), as SPIRE.
func (a *Attestor) pods(ctx context.Context) ([]corev1.Pod, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clk.Now()
	if a.cached != nil && now.Before(a.until) {
		return a.cached, nil
	}
	if a.kubelet == nil || now.Sub(a.kubelet.loaded) >= a.cfg.ReloadInterval {
		k, err := newKubelet(&a.cfg, now)
		switch {
		case err != nil && a.kubelet == nil:
			return nil, err
		case err != nil:
			a.log.WarnContext(ctx, "k8s: cannot reload the kubelet credentials; keeping the previous ones", slog.Any("error", err))
		default:
			a.kubelet = k
		}
	}
	b, err := a.kubelet.pods(ctx)
	if err != nil {
		return nil, err
	}
	pl, err := parsePodList(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKubelet, err)
	}
	pods := pl.Items[:0]
	for _, p := range pl.Items {
		if p.UID != "" {
			pods = append(pods, p)
		}
	}
	if pods == nil {
		pods = []corev1.Pod{}
	}
	a.cached, a.until = pods, a.clk.Now().Add(a.cfg.PollRetryInterval/2)
	return pods, nil
}
