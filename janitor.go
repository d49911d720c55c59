package lockstep

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/lockstep-go/lockstep/internal/link"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// A cleanup can fail while the session lives on: a key a cancelled call
// could not delete is not gone, and a lock key, a permit or a candidacy
// that nobody owns any more would hold up everyone queued behind it until
// the lease ends. So the primitives hand such cleanups to their session,
// whose janitor keeps committing them, with backoff, until etcd answers or
// the session ends (then the lease removes the keys). The janitor's
// goroutine starts with the first cleanup and is stopped and waited for by
// the session's end.

type janitor struct {
	mu      sync.Mutex
	pending []*sweep
	wake    chan struct{} // buffered: a new sweep arrived
	started bool
	stopped bool
	done    chan struct{} // closed when the goroutine returns
}

// sweep is one pending cleanup.
type sweep struct {
	c        link.Cleanup
	attempt  int
	due      time.Time
	rechecks bool // a commit succeeded; the next one is the recheck
}

// sweep hands c to the janitor.
func (s *Session) sweep(c link.Cleanup) {
	j := &s.janitor
	j.mu.Lock()
	if j.stopped {
		j.mu.Unlock()
		if c.Done != nil {
			c.Done() // the session ended: its lease takes care of the keys
		}
		return
	}
	j.pending = append(j.pending, &sweep{c: c, due: time.Now()})
	if !j.started {
		j.started = true
		j.wake = make(chan struct{}, 1)
		j.done = make(chan struct{})
		go s.sweepLoop()
	}
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// sweepLoop commits the pending cleanups as they fall due until the
// session ends.
func (s *Session) sweepLoop() {
	j := &s.janitor
	defer close(j.done)
	defer s.stopJanitor()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for s.ctx.Err() == nil {
		next, wait := j.next()
		if next != nil && wait <= 0 {
			s.commit(next)
			continue
		}
		if next == nil {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-j.wake:
		case <-timer.C:
		}
	}
}

// next returns the sweep due first and how long until it is due.
func (j *janitor) next() (*sweep, time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var first *sweep
	for _, w := range j.pending {
		if first == nil || w.due.Before(first.due) {
			first = w
		}
	}
	if first == nil {
		return nil, 0
	}
	return first, time.Until(first.due)
}

// commit tries w once and reschedules it or finishes it.
func (s *Session) commit(w *sweep) {
	ctx, cancel := context.WithTimeout(s.ctx, retry.AttemptTimeout)
	resp, err := s.cli.Txn(ctx).If(w.c.If...).Then(w.c.Then...).Else(w.c.Else...).Commit()
	cancel()
	if err == nil && w.c.Next != nil {
		for _, c := range w.c.Next(resp) {
			s.sweep(c)
		}
		w.c.Next = nil // done: a recheck does not ask again
	}
	j := &s.janitor
	switch {
	case s.ctx.Err() != nil:
		return // the loop stops and finishes everything
	case err == nil && w.c.Recheck > 0 && !w.rechecks:
		// The write this cleans up after may still be in flight: look once
		// more when it can no longer be.
		j.mu.Lock()
		w.rechecks, w.attempt, w.due = true, 0, time.Now().Add(w.c.Recheck)
		j.mu.Unlock()
		return
	case err == nil, errors.Is(err, rpctypes.ErrLeaseNotFound):
		// Done; or the lease, and every key attached to it, is gone.
	case retry.Transient(err) || errors.Is(err, context.DeadlineExceeded):
		j.mu.Lock()
		w.due = time.Now().Add(retry.Delay(w.attempt))
		w.attempt++
		j.mu.Unlock()
		return
	default:
		// Refused on its merits (permission denied): it will not pass.
		// The keys go when the lease does.
	}
	j.remove(w)
	if w.c.Done != nil {
		w.c.Done()
	}
}

func (j *janitor) remove(w *sweep) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, p := range j.pending {
		if p == w {
			j.pending = append(j.pending[:i], j.pending[i+1:]...)
			return
		}
	}
}

// stopJanitor ends the janitor's work: the session has ended, so its lease
// will remove what is left. Every pending cleanup's Done runs.
func (s *Session) stopJanitor() {
	j := &s.janitor
	j.mu.Lock()
	j.stopped = true
	left := j.pending
	j.pending = nil
	j.mu.Unlock()
	for _, w := range left {
		if w.c.Done != nil {
			w.c.Done()
		}
	}
}

// waitJanitor waits for the janitor's goroutine, if it ever started; the
// session must have ended.
func (s *Session) waitJanitor() {
	j := &s.janitor
	j.mu.Lock()
	started := j.started
	j.mu.Unlock()
	if started {
		<-j.done
	} else {
		s.stopJanitor()
	}
}
