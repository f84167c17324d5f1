package rotationload

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// createTokens creates one join token per agent.
func (r *run) createTokens(ctx context.Context) ([]string, error) {
	tokens := make([]string, r.cfg.Agents)
	client := agentv1.NewAgentClient(r.admin)
	next := make(chan int)
	errs := make(chan error, tokenWorkers)
	var wg sync.WaitGroup
	for range tokenWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tok, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 24 * 3600})
				if err != nil {
					errs <- fmt.Errorf("rotationload: create join token: %w", err)
					return
				}
				tokens[i] = tok.Value
			}
		}()
	}
	var err error
feed:
	for i := range tokens {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return tokens, err
}

// createEntries registers EntriesPerAgent entries under each agent.
func (r *run) createEntries(ctx context.Context, tokens []string) error {
	td := r.cfg.TrustDomain
	r.expected = make(map[spiffeid.ID]map[string]spiffeid.ID, len(tokens))
	var batch []*types.Entry
	var owners []spiffeid.ID
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := entryv1.NewEntryClient(r.admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: batch})
		if err != nil {
			return fmt.Errorf("rotationload: BatchCreateEntry: %w", err)
		}
		if len(resp.Results) != len(batch) {
			return fmt.Errorf("rotationload: BatchCreateEntry answered %d results for %d entries", len(resp.Results), len(batch))
		}
		for i, res := range resp.Results {
			if c := codes.Code(res.GetStatus().GetCode()); c != codes.OK {
				return fmt.Errorf("rotationload: create entry %s: %v %s", batch[i].SpiffeId.Path, c, res.GetStatus().GetMessage())
			}
			id, err := entryID(batch[i])
			if err != nil {
				return err
			}
			r.expected[owners[i]][res.Entry.Id] = id
		}
		batch, owners = batch[:0], owners[:0]
		return nil
	}
	for i, tok := range tokens {
		agentID, err := spiffeid.FromSegments(td, "spire", "agent", "join_token", tok)
		if err != nil {
			return fmt.Errorf("rotationload: join token: %w", err)
		}
		r.expected[agentID] = make(map[string]spiffeid.ID, r.cfg.EntriesPerAgent)
		for j := range r.cfg.EntriesPerAgent {
			batch = append(batch, &types.Entry{
				SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: fmt.Sprintf("/load/agent%d/workload%d", i, j)},
				ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()},
				Selectors: []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 10000+j)}},
			})
			owners = append(owners, agentID)
			if len(batch) == entryChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	n, err := entryv1.NewEntryClient(r.admin).CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: CountEntries: %w", err)
	}
	r.res.Entries = int(n.Count)
	return nil
}

// startAgents runs one simulated agent per token, at most StartConcurrency
// of them loading at once, and returns once all hold their SVIDs and the
// server counts them.
func (r *run) startAgents(ctx context.Context, tokens []string, wg *sync.WaitGroup, errs chan<- error) error {
	cfg := r.cfg
	r.converged = make(map[spiffeid.ID]time.Time, len(tokens))
	r.allConv = make(chan struct{})
	bundle := r.srv.CA().Bundle().X509Authorities()
	for _, tok := range tokens {
		a, err := NewAgent(AgentConfig{
			TrustDomain:   cfg.TrustDomain,
			ServerAddress: r.srv.AgentAddr().String(),
			JoinToken:     tok,
			TrustBundle:   bundle,
			ReuseKey:      cfg.ReuseKey,
			Target: func() string {
				if t := r.target.Load(); t != nil {
					return *t
				}
				return ""
			},
			Converged: r.agentConverged,
			Rand:      cfg.Rand,
			Now:       cfg.Now,
		})
		if err != nil {
			return err
		}
		r.agents = append(r.agents, a)
	}
	sem := make(chan struct{}, cfg.StartConcurrency)
	loaded := make(chan struct{}, len(r.agents))
	firstErr := make(chan error, len(r.agents))
	start := cfg.Now()
	for _, a := range r.agents {
		select {
		case sem <- struct{}{}:
		case err := <-firstErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			released := false
			err := a.Run(ctx, func() {
				released = true
				<-sem
				loaded <- struct{}{}
			})
			if !released {
				<-sem
			}
			if err != nil {
				firstErr <- err
				errs <- err
			}
		}()
	}
	for range r.agents {
		select {
		case <-loaded:
		case err := <-firstErr:
			return err
		case <-ctx.Done():
			return fmt.Errorf("rotationload: agents did not load: %w", ctx.Err())
		}
	}
	r.res.LoadElapsed = cfg.Now().Sub(start)
	n, err := agentv1.NewAgentClient(r.admin).CountAgents(ctx, &agentv1.CountAgentsRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: CountAgents: %w", err)
	}
	r.res.AgentRecords = int(n.Count)
	r.res.MemLoaded = sampleMemory()
	return nil
}
