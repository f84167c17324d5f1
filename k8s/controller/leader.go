package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults of LeaderElection.
const (
	DefaultLeaseName     = "signet-k8s-controller"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// LeaderElection makes replicas take turns through a
// coordination.k8s.io Lease, so that only one reconciles at a time.
type LeaderElection struct {
	// Namespace and Name of the Lease (Name DefaultLeaseName if empty).
	Namespace, Name string
	// Identity is this replica's name in the Lease (its pod name).
	Identity string
	// Durations; the Default* values if zero.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunElected runs the controller while it holds the lease, until ctx
// ends. Losing the lease stops reconciling and returns an error, so that
// the process restarts (as client-go's leader election expects) rather
// than act on a stale lead.
func (c *Controller) RunElected(ctx context.Context, le LeaderElection) error {
	if le.Namespace == "" || le.Identity == "" {
		return errors.New("controller: leader election needs the lease namespace and this replica's identity")
	}
	if le.Name == "" {
		le.Name = DefaultLeaseName
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&le.LeaseDuration, DefaultLeaseDuration)
	def(&le.RenewDeadline, DefaultRenewDeadline)
	def(&le.RetryPeriod, DefaultRetryPeriod)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, le.Namespace, le.Name,
		c.cfg.Kube.CoreV1(), c.cfg.Kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: le.Identity})
	if err != nil {
		return fmt.Errorf("controller: lease lock: %w", err)
	}
	// OnStartedLeading runs on its own goroutine, which elector.Run does
	// not wait for: wg does, so that no reconciliation outlives the lead,
	// and finished stops one that starts after elector.Run returned.
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		finished bool
		runErr   error
		lost     bool
	)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				mu.Lock()
				if finished {
					mu.Unlock()
					return
				}
				wg.Add(1)
				mu.Unlock()
				defer wg.Done()
				c.log.Info("controller: leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
				if err := c.Run(ctx); err != nil {
					mu.Lock()
					runErr = err
					mu.Unlock()
				}
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					mu.Lock()
					lost = true
					mu.Unlock()
				}
				c.log.Info("controller: stopped leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
			},
			OnNewLeader: func(id string) {
				if id != le.Identity {
					c.log.Info("controller: following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("controller: leader election: %w", err)
	}
	elector.Run(ctx)
	mu.Lock()
	finished = true
	mu.Unlock()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if runErr != nil {
		return runErr
	}
	if lost {
		return errors.New("controller: lost the leader lease")
	}
	return nil
}
