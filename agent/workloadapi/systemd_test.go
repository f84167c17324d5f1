package workloadapi_test

import (
	"os"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/systemd"
	"github.com/signet-id/signet/attest/systemd/systemdtest"
)

// TestSystemdSelectorsAreTheCallers: with the systemd attestor (through a
// real dbus-daemon and the systemd1 stand-in), the Workload API attests
// the process that connected, a child in web.service, not the agent's own
// process (in signet-agent.service): the child gets the web entry's SVID
// and not the agent's.
func TestSystemdSelectorsAreTheCallers(t *testing.T) {
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	sd.AddUnit(t, "signet-agent.service", map[string]any{"Id": "signet-agent.service", "FragmentPath": "/etc/systemd/system/signet-agent.service"}, int32(os.Getpid()))
	att := systemd.New(systemd.WithBusAddress(bus.Address))
	t.Cleanup(func() { _ = att.Close() })
	unitEntry := func(id, path, unit string) *types.Entry {
		e := newEntry(id, path)
		e.Selectors = []*types.Selector{{Type: systemd.SelectorType, Value: "id:" + unit}}
		return e
	}
	e := startWith(t, func(c *workloadapi.Config) { c.Attestor = att },
		unitEntry("e1", "/web", "web.service"), unitEntry("e2", "/agent-itself", "signet-agent.service"))
	caller := connectFromChild(t, e.sock)
	child := int32(caller.cmd.Process.Pid)
	sd.AddUnit(t, "web.service", map[string]any{"Id": "web.service", "FragmentPath": "/etc/systemd/system/web.service"}, child)

	stream, err := caller.client(t).FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvSVIDs(t, stream); !slices.Equal(got, []string{"spiffe://example.org/web"}) {
		t.Fatalf("X.509-SVIDs %q, want only the web unit's", got)
	}
	if asked := sd.Asked(); !slices.Equal(asked, []uint32{uint32(child)}) {
		t.Fatalf("systemd was asked about PIDs %v, want only the caller's %d", asked, child)
	}
}
