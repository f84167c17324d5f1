package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/docker"
	"github.com/signet-id/signet/attest/k8s"
	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/attest/systemd"
	"github.com/signet-id/signet/attest/systemd/systemdtest"
	"github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/signet-id/signet/internal/nobodytest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// These tests perform the local attack on the container and systemd
// workload attestors: a process of another user (uid 65534), outside the
// unit, container or pod an entry selects, asks a real agent's Workload
// API for identities. It gets its own (an entry for its uid, which shows
// it reached and was attested by the agent) and never the unit's,
// container's or pod's, which a process inside does get.

const fetchSocketEnv = "SIGNET_E2E_FETCH_SOCKET"

// TestHelperFetchAll is the other-uid workload: with $SIGNET_E2E_FETCH_SOCKET
// set it fetches every X.509-SVID it is entitled to and prints
// "spiffe-ids: a,b" or "error: <error>".
func TestHelperFetchAll(t *testing.T) {
	sock := os.Getenv(fetchSocketEnv)
	if sock == "" {
		t.Skip("helper process only")
	}
	ids, err := fetchAll(sock)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("spiffe-ids: " + strings.Join(ids, ","))
	os.Exit(0)
}

// fetchAll returns the sorted SPIFFE IDs of the caller's X.509-SVIDs.
func fetchAll(sock string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	xc, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+sock))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range xc.SVIDs {
		ids = append(ids, s.ID.String())
	}
	sort.Strings(ids)
	return ids, nil
}

// otherUIDEnv is a server and a real agent whose Workload API socket sits
// in a 0755 directory, so that uid 65534 reaches it.
type otherUIDEnv struct {
	srv    *testServer
	agent  *testAgent
	parent spiffeid.ID
	dir    string
}

func startOtherUIDEnv(t *testing.T, typ string, attestor agent.WorkloadAttestor) *otherUIDEnv {
	t.Helper()
	nobodytest.RequireRoot(t)
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	parent := agentIDFor(token)
	// The other uid's own entry: proof that it reaches the agent and is
	// attested, so a refusal below is the attestor's doing.
	srv.createEntry(t, spiffeid.RequireFromPath(td, "/nobody"), parent, uidSelector(nobodytest.UID))
	ag := startAgent(t, srv, dir, token, func(c *agent.Config) {
		c.Attestor = agent.Attestors{{Type: unix.SelectorType, Attestor: unix.New()}, {Type: typ, Attestor: attestor}}
	})
	return &otherUIDEnv{srv: srv, agent: ag, parent: parent, dir: dir}
}

// fetchAsNobody runs TestHelperFetchAll as uid 65534 against the agent
// and returns its output.
func (e *otherUIDEnv) fetchAsNobody(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(e.dir, "e2e.test")
	if _, err := os.Stat(bin); err != nil {
		nobodytest.TestBinary(t, e.dir, "e2e.test")
	}
	cmd := nobodytest.As(exec.Command(bin, "-test.run=^TestHelperFetchAll$"))
	cmd.Env = append(os.Environ(), fetchSocketEnv+"="+e.agent.socket)
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}

// wantOnlyOwn checks the other uid's answer: its own SVID and no other.
func wantOnlyOwn(t *testing.T, out string, protected spiffeid.ID) {
	t.Helper()
	if strings.Contains(out, protected.String()) {
		t.Fatalf("uid %d outside got %s: %q", nobodytest.UID, protected, out)
	}
	if want := "spiffe-ids: spiffe://example.org/nobody"; !strings.HasPrefix(out, want) || strings.Contains(out, ",") {
		t.Fatalf("uid %d: %q, want only its own SVID (%q)", nobodytest.UID, out, want)
	}
}

// TestOtherUIDOutsideSystemdUnitGetsNotItsSVID: the systemd stand-in on a
// real dbus-daemon puts this test process in web.service; the entry
// selects systemd:id:web.service. This process gets the unit's SVID; uid
// 65534, in no unit, does not.
func TestOtherUIDOutsideSystemdUnitGetsNotItsSVID(t *testing.T) {
	nobodytest.RequireRoot(t)
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	sd.AddUnit(t, "web.service", map[string]any{"Id": "web.service", "FragmentPath": "/etc/systemd/system/web.service"}, int32(os.Getpid()))
	att := systemd.New(systemd.WithBusAddress(bus.Address))
	t.Cleanup(func() { _ = att.Close() })
	e := startOtherUIDEnv(t, systemd.SelectorType, att)
	unit := spiffeid.RequireFromPath(td, "/unit/web")
	e.srv.createEntry(t, unit, e.parent, &types.Selector{Type: systemd.SelectorType, Value: "id:web.service"})

	waitFor(t, 30*time.Second, "the unit's SVID for the process in the unit", func() bool {
		ids, err := fetchAll(e.agent.socket)
		return err == nil && slices.Contains(ids, unit.String())
	})
	wantOnlyOwn(t, e.fetchAsNobody(t), unit)
}

// TestOtherUIDOutsideContainerGetsNotItsSVID: the entry selects a docker
// label; a labelled container (rootful podman, attested through podman's
// Engine API) gets the SVID over the socket mounted into it; uid 65534 on
// the host does not.
func TestOtherUIDOutsideContainerGetsNotItsSVID(t *testing.T) {
	nobodytest.RequireRoot(t)
	pm := podmantest.Start(t)
	att, err := docker.New(docker.Config{SocketPath: pm.Socket})
	if err != nil {
		t.Fatal(err)
	}
	e := startOtherUIDEnv(t, docker.SelectorType, att)
	web := spiffeid.RequireFromPath(td, "/container/web")
	e.srv.createEntry(t, web, e.parent, &types.Selector{Type: docker.SelectorType, Value: "label:signet.test/app:web"})

	const image = "localhost/signet-otheruid:docker"
	pm.Import(image, pm.BuildFetchSVID())
	out := pm.RunOnce(image, "--volume", e.dir+":/run/signet", "--label", "signet.test/app=web",
		"--entrypoint", `["/app", "/run/signet/`+filepath.Base(e.agent.socket)+`", "20"]`)
	if out != "spiffe-id: "+web.String() {
		t.Fatalf("labelled container: %q, want its SVID %s", out, web)
	}
	wantOnlyOwn(t, e.fetchAsNobody(t), web)
}

// TestOtherUIDOutsidePodGetsNotItsSVID: the entry selects a pod UID; a
// container (rootful podman) in that pod's cgroups, listed by the kubelet
// stand-in, gets the SVID; uid 65534 on the host does not.
func TestOtherUIDOutsidePodGetsNotItsSVID(t *testing.T) {
	nobodytest.RequireRoot(t)
	pm := podmantest.Start(t)
	const podUID = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
	kubelet := k8stest.New(t, k8stest.PodListWith(podUID, strings.Repeat("0", 64)))
	att, err := k8s.New(k8s.Config{SecurePort: kubelet.Port(t), KubeletCAPath: kubelet.CAFile(t),
		TokenPath: k8stest.TokenFile(t, kubelet.Token), MaxPollAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := startOtherUIDEnv(t, k8s.SelectorType, att)
	pod := spiffeid.RequireFromPath(td, "/pod/web")
	e.srv.createEntry(t, pod, e.parent, &types.Selector{Type: k8s.SelectorType, Value: "pod-uid:" + podUID})

	const image = "localhost/signet-otheruid:k8s"
	pm.Import(image, pm.BuildFetchSVID())
	// The workload retries for up to 60 s: the kubelet lists its
	// container once podman has named it.
	id, _ := pm.RunContainer(image, "--cgroup-parent", pm.PodCgroupParent(podUID), "--volume", e.dir+":/run/signet",
		"--entrypoint", `["/app", "/run/signet/`+filepath.Base(e.agent.socket)+`", "60"]`)
	kubelet.SetLists(func(int) []byte { return k8stest.PodListWith(podUID, id) })
	pm.Run("wait", id)
	if out := pm.Run("logs", id); out != "spiffe-id: "+pod.String() {
		t.Fatalf("container in the pod: %q, want its SVID %s", out, pod)
	}
	wantOnlyOwn(t, e.fetchAsNobody(t), pod)
}
