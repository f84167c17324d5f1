package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// describe fills in each scenario's title and method.
func (h *harness) describe() {
	p := h.p
	set := func(n int, title, how string) {
		if h.enabled(n) {
			s := h.rep.scenario(n)
			s.Title, s.How = title, how
		}
	}
	set(1, "X.509-SVID issuance throughput", fmt.Sprintf(
		"Closed loop for %v per concurrency level and figure (%d interleaved rounds; at most %d SVIDs). MintX509SVID goes over the admin socket with "+
			"pre-made CSRs (the client's key generation is not measured). BatchNewX509SVID goes over the agent "+
			"listener (mTLS) as an agent attested with a join token, %d SVIDs per request for 64 entries parented to "+
			"that agent. The raw signing ceiling is `x509.CreateCertificate` with an ECDSA P-256 CA key over "+
			"SVID-shaped templates in the harness process, at the same concurrency, in the same run.",
		p.mintDur, p.mintRounds, p.mintMax, batchSize))
	set(2, "Workload API latency", fmt.Sprintf(
		"N go-spiffe clients (one gRPC connection each, all from the harness's uid) call the agent's Workload "+
			"API at the same time, back to back (calls per connection: %s); each client has made one call "+
			"before (connection set-up not measured). Latency per call in milliseconds.",
		fmtCalls(p.fetchCalls, p.fetchConc)))
	set(3, "Propagation of a new entry", fmt.Sprintf(
		"A go-spiffe client watches its X.509 context (WatchX509Context). %d times: wait a random delay "+
			"(uniform in [0, %v), the same seeded sequence for both systems, so that entry creation falls at "+
			"random points of any polling cycle), then create an entry for the workload's uid over the admin "+
			"API and time until the watching workload receives an SVID for it.", p.propN, p.propJitter))
	set(4, "Scale: agent sync and memory", fmt.Sprintf("For each size a fresh server: register N entries parented "+
		"to a new agent (non-matching unix selectors) plus one for the harness's uid, over the admin API in "+
		"BatchCreateEntry calls of 1000 entries (up to %d in flight); then start the agent and time until the workload receives "+
		"its SVID (the agent has attested and synced all N entries by then). RSS is VmRSS from "+
		"/proc/<pid>/status %v later; peak is VmHWM.", p.regConc, p.settle))
	set(5, "Forced rotation after tainting the X.509 authority", "Over the LocalAuthority API: prepare "+
		"a new X.509 authority, activate it, then taint the old one; time from the taint call until every "+
		"X.509-SVID of the watching workload (the workload entry plus the propagation entries) is signed "+
		"by a key other than the tainted one.")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func fmtCalls(calls map[int]int, conc []int) string {
	var parts []string
	for _, c := range conc {
		parts = append(parts, fmt.Sprintf("%d at N=%d", calls[c], c))
	}
	return strings.Join(parts, ", ")
}

// issuance is scenario 1.
func (h *harness) issuance(ctx context.Context) {
	h.logf("scenario 1: issuance throughput")
	ceil, err := newSigningCeiling(64)
	if err != nil {
		h.rep.note(1, "raw ceiling unavailable: %v", err)
	}
	csrs, err := mintCSRs(64)
	if err != nil {
		h.rep.note(1, "CSR generation failed: %v", err)
		return
	}
	raw := map[string]*rawAgent{}
	rawErr := map[string]error{}
	for _, s := range h.sys {
		p := h.pairs[s.name]
		if p == nil || p.err != nil {
			continue
		}
		a, err := attestRawAgent(ctx, p.srv)
		if err == nil {
			err = a.prepareBatch(ctx, p.srv, 64)
		}
		if err != nil {
			h.logf("%s: BatchNewX509SVID set-up: %v", s.name, err)
			rawErr[s.name] = err
			a.close()
			continue
		}
		raw[s.name] = a
	}
	defer func() {
		for _, a := range raw {
			a.close()
		}
	}()
	// Each figure is the sum over several short rounds, the measurements
	// interleaved round by round, so that a burst of load from elsewhere
	// on the machine does not fall on one system only.
	type measure struct {
		op    func(context.Context, int, int64) error
		perOp int
		res   loadResult
		err   error
	}
	var mintRows, batchRows []row
	for _, c := range h.p.mintConc {
		ms := map[string]*measure{}
		var order []string
		if ceil != nil {
			ms["ceiling"] = &measure{op: ceil.sign, perOp: 1}
			order = append(order, "ceiling")
		}
		for _, s := range h.sys {
			p := h.pairs[s.name]
			if p == nil || p.err != nil {
				continue
			}
			ms["mint "+s.name] = &measure{op: mintOp(p.srv, csrs), perOp: 1}
			order = append(order, "mint "+s.name)
			if a := raw[s.name]; a != nil {
				ms["batch "+s.name] = &measure{op: a.batchOp(p.srv), perOp: batchSize}
				order = append(order, "batch "+s.name)
			}
		}
		for round := 0; round < h.p.mintRounds; round++ {
			for _, k := range order {
				m := ms[k]
				if m.err != nil {
					continue
				}
				r, err := closedLoop(ctx, c, h.p.mintDur/time.Duration(h.p.mintRounds), h.p.mintMax/int64(h.p.mintRounds*m.perOp), m.op)
				m.res.ops += r.ops
				m.res.elapsed += r.elapsed
				m.err = err
			}
		}
		val := func(k string) value {
			m := ms[k]
			switch {
			case m == nil:
				return missing("not measured")
			case m.err != nil:
				return failed(m.err)
			}
			return measured(m.res.rate(m.perOp))
		}
		cv := val("ceiling")
		sig, spi := h.forEach(func(p *pair) (float64, error) {
			v := val("mint " + p.sys.name)
			if !v.OK {
				return 0, errors.New(v.Note)
			}
			return v.V, nil
		})
		mintRows = append(mintRows, row{Scenario: 1, Metric: fmt.Sprintf("MintX509SVID, concurrency %d", c), Unit: "SVIDs/s",
			HigherBetter: true, Signet: sig, SPIRE: spi, Ceiling: &cv})
		sig, spi = h.forEach(func(p *pair) (float64, error) {
			if rawErr[p.sys.name] != nil {
				return 0, fmt.Errorf("agent identity unavailable: %w", rawErr[p.sys.name])
			}
			v := val("batch " + p.sys.name)
			if !v.OK {
				return 0, errors.New(v.Note)
			}
			return v.V, nil
		})
		batchRows = append(batchRows, row{Scenario: 1, Metric: fmt.Sprintf("BatchNewX509SVID (%d per call), concurrency %d", batchSize, c), Unit: "SVIDs/s",
			HigherBetter: true, Signet: sig, SPIRE: spi, Ceiling: &cv})
	}
	for _, r := range append(mintRows, batchRows...) {
		h.rep.add(r)
	}
	h.rep.note(1, "The machine has %d CPUs shared by the server, the harness (client and ceiling loop) and idle agents; beyond that concurrency only queueing grows.", numCPU())
}

// workloadLatency is scenario 2.
func (h *harness) workloadLatency(ctx context.Context) {
	h.logf("scenario 2: Workload API latency")
	type key struct {
		kind string
		conc int
	}
	results := map[string]map[key][2]float64{}
	errs := map[string]error{}
	for _, s := range h.sys {
		p := h.pairs[s.name]
		results[s.name] = map[key][2]float64{}
		if p == nil || p.err != nil {
			continue
		}
		for _, c := range h.p.fetchConc {
			clients, err := openClients(ctx, p.ag.socket, c)
			if err != nil {
				errs[s.name] = err
				break
			}
			for _, k := range fetchKinds(p.workload, fmt.Sprintf("%s%d", s.name, c)) {
				lat, err := latencyRun(ctx, clients, k, h.p.fetchCalls[c], h.p.fetchBound)
				if err != nil {
					errs[s.name] = fmt.Errorf("%s at N=%d: %w", k.name, c, err)
					break
				}
				if want := c * h.p.fetchCalls[c]; len(lat) < want {
					h.rep.note(2, "%s %s at N=%d: only %d of %d calls finished within %v.", s.name, k.name, c, len(lat), want, h.p.fetchBound)
				}
				p50, p99 := percentiles(lat)
				results[s.name][key{k.name, c}] = [2]float64{p50, p99}
			}
			closeClients(clients)
			if errs[s.name] != nil {
				h.logf("%s: %v", s.name, errs[s.name])
				break
			}
		}
	}
	for _, k := range fetchKinds(spiffeid.ID{}, "") {
		for _, c := range h.p.fetchConc {
			for q, qname := range []string{"p50", "p99"} {
				sig, spi := h.forEach(func(p *pair) (float64, error) {
					if v, ok := results[p.sys.name][key{k.name, c}]; ok {
						return v[q], nil
					}
					if err := errs[p.sys.name]; err != nil {
						return 0, err
					}
					return 0, fmt.Errorf("not measured")
				})
				h.rep.add(row{Scenario: 2, Metric: fmt.Sprintf("%s, %s, %s", k.name, plural(c, "connection"), qname), Unit: "ms", Signet: sig, SPIRE: spi})
			}
		}
	}
}

// propagation is scenario 3; it also leaves the entries that scenario 5
// rotates.
func (h *harness) propagation(ctx context.Context) {
	h.logf("scenario 3: propagation")
	lats := map[string][]time.Duration{}
	errs := map[string]error{}
	for _, s := range h.sys {
		p := h.pairs[s.name]
		if p == nil || p.err != nil {
			continue
		}
		lat, err := h.propagate(ctx, p)
		lats[s.name], errs[s.name] = lat, err
		if err != nil {
			h.logf("%s: %v", s.name, err)
		}
	}
	if !h.enabled(3) {
		return
	}
	h.rep.note(3, "SPIRE's figures follow from its defaults: its agent syncs with the server every 5 s and its server refreshes its entry cache every 5 s. Signet's server pushes entry changes to the agents it concerns.")
	for q, qname := range []string{"p50", "p99"} {
		sig, spi := h.forEach(func(p *pair) (float64, error) {
			if err := errs[p.sys.name]; err != nil {
				return 0, err
			}
			p50, p99 := percentiles(lats[p.sys.name])
			return [2]float64{p50, p99}[q] / 1000, nil
		})
		h.rep.add(row{Scenario: 3, Metric: fmt.Sprintf("entry created → SVID delivered, %s of %d", qname, h.p.propN), Unit: "s", Signet: sig, SPIRE: spi})
	}
}

func (h *harness) propagate(ctx context.Context, p *pair) ([]time.Duration, error) {
	w, err := watchX509(ctx, p.ag.socket)
	if err != nil {
		return nil, err
	}
	defer w.close()
	if _, err := w.wait(ctx, 60*time.Second, func(x *workloadapi.X509Context) bool { return hasID(x, p.workload) }); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(h.opt.seed), 7))
	var lat []time.Duration
	for i := 0; i < h.p.propN; i++ {
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(h.p.propJitter)))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		id := spiffeid.RequireFromSegments(trustDomain, "bench", "propagation", strconv.Itoa(i))
		t0 := time.Now()
		if _, err := p.srv.createEntries(ctx, []*types.Entry{{
			SpiffeId: protoID(id), ParentId: protoID(p.ag.id), Selectors: h.uidSelector(),
		}}, 1, 1); err != nil {
			return nil, err
		}
		p.propIDs = append(p.propIDs, id)
		at, err := w.wait(ctx, 60*time.Second, func(x *workloadapi.X509Context) bool { return hasID(x, id) })
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		lat = append(lat, at.Sub(t0))
	}
	return lat, nil
}

// rotation is scenario 5.
func (h *harness) rotation(ctx context.Context) {
	h.logf("scenario 5: forced rotation")
	counts := map[string]int{}
	sig, spi := h.forEach(func(p *pair) (float64, error) {
		d, n, err := h.rotate(ctx, p)
		counts[p.sys.name] = n
		return d.Seconds(), err
	})
	n := max(counts["Signet"], counts["SPIRE"])
	h.rep.add(row{Scenario: 5, Metric: fmt.Sprintf("taint → all %d workload X.509-SVIDs replaced", n), Unit: "s", Signet: sig, SPIRE: spi})
	h.rep.note(5, "SPIRE's agent learns of a tainted authority at its next sync with the server (every 5 s by default) and then replaces the SVIDs it signed; Signet's server pushes \"renew now\" to the agents holding them.")
}

// errUnavailable marks a feature the server does not serve.
type errUnavailable struct{ what string }

func (e errUnavailable) Error() string { return "not available: " + e.what }

func (h *harness) rotate(ctx context.Context, p *pair) (time.Duration, int, error) {
	want := append([]spiffeid.ID{p.workload}, p.propIDs...)
	w, err := watchX509(ctx, p.ag.socket)
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	if _, err := w.wait(ctx, 60*time.Second, func(x *workloadapi.X509Context) bool {
		return !slices.ContainsFunc(want, func(id spiffeid.ID) bool { return !hasID(x, id) })
	}); err != nil {
		return 0, len(want), err
	}
	la := localauthorityv1.NewLocalAuthorityClient(p.srv.admin)
	state, err := la.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil {
		return 0, len(want), unavailable(p, "GetX509AuthorityState", err)
	}
	old := state.GetActive().GetAuthorityId()
	if old == "" {
		return 0, len(want), fmt.Errorf("no active X.509 authority reported")
	}
	prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		return 0, len(want), unavailable(p, "PrepareX509Authority", err)
	}
	if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: prep.GetPreparedAuthority().GetAuthorityId()}); err != nil {
		return 0, len(want), unavailable(p, "ActivateX509Authority", err)
	}
	// Let the activation settle, so that only the taint is timed; neither
	// system should replace SVIDs that still chain to the bundle then.
	select {
	case <-time.After(h.p.settle):
	case <-ctx.Done():
		return 0, len(want), ctx.Err()
	}
	w.mu.Lock()
	stale := signedBy(w.latest, old)
	w.mu.Unlock()
	if stale < len(want) {
		h.rep.note(5, "%s had already replaced %d of %d SVIDs after the activation, before the taint.", p.sys.name, len(want)-stale, len(want))
	}
	t0 := time.Now()
	if _, err := la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: old}); err != nil {
		return 0, len(want), unavailable(p, "TaintX509Authority", err)
	}
	at, err := w.wait(ctx, h.p.rotBound, func(x *workloadapi.X509Context) bool {
		for _, id := range want {
			if !hasID(x, id) {
				return false
			}
		}
		return signedBy(x, old) == 0
	})
	if err != nil {
		return 0, len(want), err
	}
	return at.Sub(t0), len(want), nil
}

// signedBy counts the SVIDs in x whose leaf the authority with ID
// authorityID signed.
func signedBy(x *workloadapi.X509Context, authorityID string) int {
	n := 0
	for _, s := range x.SVIDs {
		if strings.EqualFold(hex.EncodeToString(s.Certificates[0].AuthorityKeyId), authorityID) {
			n++
		}
	}
	return n
}

func unavailable(p *pair, rpc string, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return errUnavailable{what: p.sys.name + " does not serve LocalAuthority." + rpc + " yet"}
	}
	return fmt.Errorf("%s: %w", rpc, err)
}

// scale is scenario 4: fresh servers per size.
func (h *harness) scale(ctx context.Context) {
	h.logf("scenario 4: scale %v", h.p.scale)
	if def := paramsFor(h.opt.smoke).scale; !slices.Equal(def, h.p.scale) {
		h.rep.note(4, "Sizes %v were chosen for this run instead of the default %v (see the command).", h.p.scale, def)
	}
	capped := len(h.opt.scale) == 0 // explicit sizes are run as given
	prev := 0
	var slowest time.Duration // longest registration at the previous size
	slowestSys := ""
	for _, n := range h.p.scale {
		// Registration slows down as a store grows, so project its time
		// as growing with the square of the size (conservative for both
		// systems as measured here).
		if capped && prev > 0 && slowest > 0 {
			projected := time.Duration(float64(slowest) * float64(n) * float64(n) / float64(prev) / float64(prev))
			if projected > h.p.regBudget {
				step := max(n/10, 1)
				fit := int(float64(prev)*math.Sqrt(float64(h.p.regBudget)/float64(slowest))) / step * step
				why := fmt.Sprintf("%s took %v to register %d entries, which projects (time growing with the square of the size, as SPIRE's sqlite store showed here) to about %v for %d, over the harness's budget of %v per system",
					slowestSys, slowest.Round(time.Second), prev, projected.Round(time.Minute), n, h.p.regBudget)
				if fit <= prev {
					h.rep.note(4, "The %d-entry size was skipped: %s.", n, why)
					continue
				}
				h.rep.note(4, "The %d-entry size was reduced to %d: %s.", n, fit, why)
				n = fit
			}
		}
		prev = n
		res := map[string]scaleResult{}
		errs := map[string]error{}
		for _, s := range h.sys {
			h.logf("%s: %d entries", s.name, n)
			r, err := h.scalePoint(ctx, s, n)
			res[s.name], errs[s.name] = r, err
			if err != nil {
				h.logf("%s: %v", s.name, err)
			}
		}
		get := func(f func(scaleResult) value) (value, value) {
			out := [2]value{}
			for i, name := range []string{"Signet", "SPIRE"} {
				v := f(res[name])
				if !v.OK && v.Note == "" {
					if errs[name] != nil {
						v = failed(errs[name])
					} else {
						v = missing("not measured")
					}
				}
				out[i] = v
			}
			return out[0], out[1]
		}
		slowest = 0
		for name, r := range res {
			if r.createTime > slowest {
				slowest, slowestSys = r.createTime, name
			}
		}
		label := strconv.Itoa(n)
		if n%1000 == 0 {
			label = strconv.Itoa(n/1000) + "k"
		}
		add := func(metric, unit string, higher bool, f func(scaleResult) value) {
			sig, spi := get(f)
			h.rep.add(row{Scenario: 4, Metric: label + " entries: " + metric, Unit: unit, HigherBetter: higher, Signet: sig, SPIRE: spi})
		}
		add("registration (BatchCreateEntry)", "entries/s", true, func(r scaleResult) value { return r.createRate })
		add("agent start → all synced, workload served", "s", false, func(r scaleResult) value { return r.sync })
		add("server RSS", "MiB", false, func(r scaleResult) value { return r.serverRSS })
		add("agent RSS", "MiB", false, func(r scaleResult) value { return r.agentRSS })
		add("server peak RSS", "MiB", false, func(r scaleResult) value { return r.serverPeak })
		add("agent peak RSS", "MiB", false, func(r scaleResult) value { return r.agentPeak })
	}
	h.rep.note(4, "Both agents mint X.509-SVIDs lazily, for workloads that attest, into an LRU of at most 1000 (x509_svid_cache_max_size, both defaults), and sync entries through SyncAuthorizedEntries.")
}

type scaleResult struct {
	createRate, sync, serverRSS, agentRSS, serverPeak, agentPeak value
	createTime                                                   time.Duration
}

func (h *harness) scalePoint(ctx context.Context, sys *system, n int) (scaleResult, error) {
	var r scaleResult
	dir := filepath.Join(h.root, fmt.Sprintf("s%d%s", n, strings.ToLower(sys.name[:2])))
	defer os.RemoveAll(dir)
	srv, err := startServer(ctx, sys, dir)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	token, err := srv.token(ctx)
	if err != nil {
		return r, err
	}
	parent := protoID(agentID(token))
	entries := make([]*types.Entry, 0, n+1)
	for i := 0; i < n; i++ {
		entries = append(entries, &types.Entry{
			SpiffeId:  protoID(spiffeid.RequireFromSegments(trustDomain, "bench", "scale", strconv.Itoa(i))),
			ParentId:  parent,
			Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(10_000_000+i)}},
		})
	}
	wl := spiffeid.RequireFromPath(trustDomain, "/bench/scale/workload")
	entries = append(entries, &types.Entry{SpiffeId: protoID(wl), ParentId: parent, Selectors: h.uidSelector()})
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, h.p.regBound)
	_, err = srv.createEntries(rctx, entries, 1000, h.p.regConc)
	cancel()
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("registration of %d entries did not finish within %v", len(entries), h.p.regBound)
		}
		return r, err
	}
	r.createTime = time.Since(t0)
	r.createRate = measured(float64(len(entries)) / r.createTime.Seconds())
	h.logf("%s: registered %d entries in %v", sys.name, len(entries), time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	ag, err := startAgent(ctx, srv, filepath.Join(dir, "a"), token)
	if err != nil {
		return r, err
	}
	defer ag.stop()
	at, err := waitForSVID(ctx, ag, wl, h.p.syncBound)
	if err != nil {
		r.sync = failed(err)
		for _, v := range []*value{&r.serverRSS, &r.agentRSS, &r.serverPeak, &r.agentPeak} {
			*v = missing("– (agent did not sync)")
		}
		return r, err
	}
	r.sync = measured(at.Sub(t0).Seconds())
	h.logf("%s: agent served after %v", sys.name, at.Sub(t0).Round(time.Millisecond))
	select {
	case <-time.After(h.p.settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	sm, err := readMemory(srv.p.pid())
	if err != nil {
		return r, err
	}
	am, err := readMemory(ag.p.pid())
	if err != nil {
		return r, err
	}
	r.serverRSS, r.serverPeak = measured(sm.RSS), measured(sm.Peak)
	r.agentRSS, r.agentPeak = measured(am.RSS), measured(am.Peak)
	return r, nil
}
