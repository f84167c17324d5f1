package secrets

import "sync"

// Update is one message to a subscriber: a new Value, or (only while no
// value could be read yet) the error that prevents it.
type Update struct {
	Value *Value
	Err   error
}

// Subscription receives the current value of one secret for one SPIFFE
// ID at once (when known) and then every change. It holds only the latest
// update, so a slow reader never blocks the broker.
type Subscription struct {
	src  *source
	ch   chan Update
	done chan struct{}
	once sync.Once
	err  error // set before done is closed
}

// Updates delivers the secret's states.
func (s *Subscription) Updates() <-chan Update { return s.ch }

// Done is closed when the broker stops delivery (policy or entry deleted:
// Err wraps ErrRevoked).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why Done was closed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the subscription.
func (s *Subscription) Close() { s.src.unsubscribe(s) }

func (s *Subscription) push(u Update) {
	select {
	case s.ch <- u:
		return
	default:
	}
	select { // drop the stale update, keep the latest
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- u:
	default:
	}
}

func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}
