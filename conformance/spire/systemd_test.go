package spire

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/systemd"
	"github.com/signet-id/signet/attest/systemd/systemdtest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestSPIREAgentSystemdSelectorsMatchSignets: a real spire-agent v1.13.3
// with its systemd WorkloadAttestor, on a real dbus-daemon where the
// systemd1 stand-in puts this test process in a unit (a fragment path with
// a space and a colon), serves this process the SVID of an entry selected
// only by the two systemd selectors Signet's attestor gives for the same
// process: both attestors derive the same selectors from the same unit.
func TestSPIREAgentSystemdSelectorsMatchSignets(t *testing.T) {
	bins := spireBinaries(t)
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	const unit = "signet-interop@1.service"
	sd.AddUnit(t, unit, map[string]any{"Id": unit, "FragmentPath": "/etc/systemd/system/signet interop:@.service"}, int32(os.Getpid()))

	a := systemd.New(systemd.WithBusAddress(bus.Address))
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sel, err := a.Attest(ctx, int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) != 2 {
		t.Fatalf("Signet's selectors %v", sel)
	}

	srv := startSignet(t, signetOptions{now: time.Now})
	token := srv.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
	me := spiffeid.RequireFromPath(td, "/workload/systemd")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: sel})

	// spire-agent finds the system bus as Signet's default does.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	socket := startSPIREAgent(t, bins.agent, srv, shortDir(t), "spire-agent-systemd.conf.tmpl", map[string]any{"JoinToken": token})
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v (entry selected by Signet's systemd selectors)", svid.ID, me)
	}
	if !slices.Contains(sd.Asked(), uint32(os.Getpid())) {
		t.Fatalf("spire-agent did not ask systemd about this process (asked %v)", sd.Asked())
	}
}
