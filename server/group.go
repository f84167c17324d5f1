package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// subsystem is one long-running part of a running server (a listener, a
// loop, a watch). Run returns nil once ctx is done and the subsystem has
// stopped, or an error when it failed; a failure stops the whole server.
type subsystem interface {
	Name() string
	Run(ctx context.Context) error
}

// unit is a subsystem made of a name and a function.
type unit struct {
	name string
	run  func(context.Context) error
}

var _ subsystem = unit{}

func (u unit) Name() string                  { return u.name }
func (u unit) Run(ctx context.Context) error { return u.run(ctx) }

// loop is a subsystem that cannot fail: run returns when ctx is done.
func loop(name string, run func(context.Context)) unit {
	return unit{name: name, run: func(ctx context.Context) error { run(ctx); return nil }}
}

// group runs subsystems, each in its own goroutine: the first failure
// cancels the context of all of them, and wait returns once every one has
// stopped.
type group struct {
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	once sync.Once
	err  error
}

// newGroup returns a group and the context its subsystems run under; it
// is cancelled when ctx is, on the first failure, or by stop.
func newGroup(ctx context.Context, log *slog.Logger) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{log: log, cancel: cancel}, ctx
}

// start runs sub in a goroutine under ctx (the group's context).
func (g *group) start(ctx context.Context, sub subsystem) {
	g.wg.Go(func() {
		g.log.Debug("subsystem started", "subsystem", sub.Name())
		err := sub.Run(ctx)
		if err != nil {
			g.once.Do(func() {
				g.err = fmt.Errorf("server: %s: %w", sub.Name(), err)
				g.cancel()
			})
			g.log.Error("subsystem failed; stopping the server", "subsystem", sub.Name(), "error", err)
			return
		}
		g.log.Debug("subsystem stopped", "subsystem", sub.Name())
	})
}

// wait blocks until every subsystem has stopped and returns the first
// failure, if any.
func (g *group) wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
