package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func newWorkloadClient(ctx context.Context, socket string) (*workloadapi.Client, error) {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return nil, fmt.Errorf("bench: workload client: %w", err)
	}
	return c, nil
}

// waitForSVID polls ag's Workload API until it returns an X.509-SVID for
// want, and returns when that happened. If the agent exits or d passes, the
// error carries the last warning of the agent's log.
func waitForSVID(ctx context.Context, ag *agent, want spiffeid.ID, d time.Duration) (time.Time, error) {
	c, err := newWorkloadClient(ctx, ag.socket)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	var at time.Time
	err = poll(ctx, d, 50*time.Millisecond, "an X.509-SVID for "+want.String(), func() (bool, error) {
		if ag.p.exited() {
			return false, fmt.Errorf("agent exited: %v", ag.p.err) //nolint:errorlint // nil after a clean exit
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		svids, err := c.FetchX509SVIDs(cctx)
		if err != nil {
			return false, err
		}
		for _, s := range svids {
			if s.ID == want {
				at = time.Now()
				return true, nil
			}
		}
		return false, fmt.Errorf("no SVID for %s yet", want)
	})
	if err != nil {
		if w := ag.p.lastWarning(); w != "" {
			err = fmt.Errorf("agent never served the workload; its last warning: %s (%w)", w, err)
		}
	}
	return at, err
}

// percentiles returns the p50 and p99 of lat, in milliseconds.
func percentiles(lat []time.Duration) (p50, p99 float64) {
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99)
}

// fetchKind is one Workload API call measured in scenario 2.
type fetchKind struct {
	name string
	call func(ctx context.Context, c *workloadapi.Client, worker, i int) error
}

func fetchKinds(want spiffeid.ID, run string) []fetchKind {
	return []fetchKind{
		{"FetchX509SVID", func(ctx context.Context, c *workloadapi.Client, _, _ int) error {
			s, err := c.FetchX509SVID(ctx)
			if err == nil && s.ID != want {
				err = fmt.Errorf("bench: got an SVID for %s, want %s", s.ID, want)
			}
			return err
		}},
		{"FetchJWTSVID, same audience", func(ctx context.Context, c *workloadapi.Client, _, _ int) error {
			_, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "bench"})
			return err
		}},
		// A fresh audience per call defeats the agents' JWT-SVID caches,
		// so each call is a round trip to the server.
		{"FetchJWTSVID, new audience per call", func(ctx context.Context, c *workloadapi.Client, w, i int) error {
			_, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: fmt.Sprintf("aud-%s-%d-%d", run, w, i)})
			return err
		}},
	}
}

// latencyRun measures kind with conc concurrent Workload API connections,
// each making calls calls back to back, bounded by d.
func latencyRun(ctx context.Context, clients []*workloadapi.Client, kind fetchKind, calls int, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, calls)
			<-startGate
			for i := 0; i < calls && ctx.Err() == nil; i++ {
				t0 := time.Now()
				err := kind.call(ctx, c, w, i)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						cancel()
					}
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	close(startGate)
	wg.Wait()
	if firstErr != nil {
		return lat, firstErr
	}
	if len(lat) == 0 {
		return nil, errors.New("bench: no call completed in time")
	}
	return lat, nil
}

// openClients opens n Workload API clients and makes one call on each, so
// that connection setup is not measured.
func openClients(ctx context.Context, socket string, n int) ([]*workloadapi.Client, error) {
	clients := make([]*workloadapi.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := newWorkloadClient(ctx, socket)
			if err != nil {
				errs[i] = err
				return
			}
			clients[i] = c
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if _, err := c.FetchX509SVID(cctx); err != nil {
				errs[i] = fmt.Errorf("bench: warm-up fetch: %w", err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeClients(clients)
		return nil, err
	}
	return clients, nil
}

func closeClients(clients []*workloadapi.Client) {
	for _, c := range clients {
		if c != nil {
			c.Close()
		}
	}
}

// x509Watch follows a workload's X.509 context over the Workload API.
type x509Watch struct {
	mu      sync.Mutex
	latest  *workloadapi.X509Context
	at      time.Time
	updated chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	client  *workloadapi.Client
}

var _ workloadapi.X509ContextWatcher = (*x509Watch)(nil)

func watchX509(ctx context.Context, socket string) (*x509Watch, error) {
	c, err := newWorkloadClient(ctx, socket)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &x509Watch{updated: make(chan struct{}), cancel: cancel, done: make(chan struct{}), client: c}
	go func() {
		defer close(w.done)
		_ = c.WatchX509Context(wctx, w)
	}()
	return w, nil
}

func (w *x509Watch) OnX509ContextUpdate(x *workloadapi.X509Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.latest, w.at = x, time.Now()
	close(w.updated)
	w.updated = make(chan struct{})
}

func (w *x509Watch) OnX509ContextWatchError(error) {}

// wait returns the arrival time of the first update (possibly one already
// received) for which cond holds.
func (w *x509Watch) wait(ctx context.Context, d time.Duration, cond func(*workloadapi.X509Context) bool) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		w.mu.Lock()
		if w.latest != nil && cond(w.latest) {
			at := w.at
			w.mu.Unlock()
			return at, nil
		}
		ch := w.updated
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("bench: no matching Workload API update within %v", d)
		}
	}
}

func (w *x509Watch) close() {
	w.cancel()
	<-w.done
	w.client.Close()
}

func hasID(x *workloadapi.X509Context, id spiffeid.ID) bool {
	for _, s := range x.SVIDs {
		if s.ID == id {
			return true
		}
	}
	return false
}
