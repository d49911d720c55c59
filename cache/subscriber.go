package cache

import "context"

// A subscriber is one Subscribe. The engine never waits for it: it hands
// each update to the subscriber's bounded queue, and a subscriber whose
// queue is full drops it and is owed a whole state instead. The
// subscriber's goroutine, owned by its Cache, delivers from the queue.
type subscriber struct {
	e    *engine
	out  chan Update
	wake chan struct{} // buffered: something to deliver, or the engine stopped
	max  int

	// Guarded by e.mu.
	queue []Update
	whole bool // owed a whole state, which replaces everything queued
}

// push queues u; e.mu is held.
func (s *subscriber) push(u Update) {
	if !s.whole {
		if len(s.queue) < s.max {
			s.queue = append(s.queue, u)
		} else {
			s.queue, s.whole = nil, true // fell behind
		}
	}
	s.signal()
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next returns the next update to deliver, or false if there is none now;
// stopped says the engine stopped for good.
func (s *subscriber) next() (u Update, ok, stopped bool) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.err != nil:
		return Update{}, false, true
	case s.whole:
		s.queue, s.whole = nil, false
		return Update{Kind: Whole, Snapshot: e.snap}, true, false
	case len(s.queue) > 0:
		u = s.queue[0]
		s.queue[0] = Update{}
		s.queue = s.queue[1:]
		return u, true, false
	}
	return Update{}, false, false
}

// run delivers updates until ctx ends, the Cache is closed (closed) or the
// engine stops; then it closes out.
func (s *subscriber) run(ctx context.Context, closed <-chan struct{}) {
	defer close(s.out)
	defer s.e.unsubscribe(s)
	for {
		u, ok, stopped := s.next()
		if stopped {
			return
		}
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
			case <-closed:
			}
			return
		}
		if !s.send(ctx, closed, u) {
			return
		}
	}
}

// send delivers u. While it waits for the subscriber, a newer update may
// make u pointless: a whole state in hand is replaced by a fresh one, and
// a change is dropped once the subscriber has fallen behind (the whole
// state owed covers it). It reports false when ctx ends or the Cache is
// closed.
func (s *subscriber) send(ctx context.Context, closed <-chan struct{}, u Update) bool {
	for {
		select {
		case s.out <- u:
			return true
		case <-s.wake:
			if s.stale(u) {
				s.signal() // next returns the whole state at once
				return true
			}
		case <-ctx.Done():
			return false
		case <-closed:
			return false
		}
	}
}

// stale reports whether u should give way to a whole state, and owes one
// if so.
func (s *subscriber) stale(u Update) bool {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if u.Kind == Whole && len(s.queue) > 0 {
		s.queue, s.whole = nil, true
	}
	return s.whole || s.e.err != nil
}

// subscribe adds a subscriber owed the whole state.
func (e *engine) subscribe(max int) *subscriber {
	s := &subscriber{e: e, out: make(chan Update), wake: make(chan struct{}, 1), max: max, whole: true}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[s] = struct{}{}
	return s
}

func (e *engine) unsubscribe(s *subscriber) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subs, s)
}
