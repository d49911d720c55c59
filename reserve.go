package lockstep

import (
	"context"
	"slices"
	"sync"
)

// Keys derived from a session's lease (etcd's Mutex and Election layout)
// are the same for every goroutine that uses the session. etcd's Mutex
// therefore lets two goroutines "hold" one lock at once; lockstep makes the
// second wait in process, in the order they asked, until the first is done
// with the key. The session's end clears every reservation.

type reservations struct {
	mu    sync.Mutex
	keys  map[string]*reservation // keys in use; nil once the session ended
	ended bool
}

// reservation is one key in use and the goroutines waiting for it, in the
// order they asked. A waiter's channel is closed when the key is handed to
// it.
type reservation struct {
	waiters []chan struct{}
}

// reserve waits until key is free, then claims it for the caller, who
// must call release once.
func (s *Session) reserve(ctx context.Context, key string) (release func(), err error) {
	r := &s.reserved
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return nil, s.Err()
	}
	if r.keys == nil {
		r.keys = map[string]*reservation{}
	}
	res, busy := r.keys[key]
	if !busy {
		res = &reservation{}
		r.keys[key] = res
		r.mu.Unlock()
		return r.releaser(key, res), nil
	}
	mine := make(chan struct{})
	res.waiters = append(res.waiters, mine)
	r.mu.Unlock()

	select {
	case <-mine:
		return r.releaser(key, res), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.ctx.Done():
		err = s.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(res.waiters, mine); i >= 0 {
		res.waiters = slices.Delete(res.waiters, i, i+1)
		return nil, err
	}
	// Handed to us as we gave up: pass it on.
	r.handOnLocked(key, res)
	return nil, err
}

func (r *reservations) releaser(key string, res *reservation) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.handOnLocked(key, res)
		})
	}
}

// handOnLocked gives key to its first waiter, or frees it.
func (r *reservations) handOnLocked(key string, res *reservation) {
	if r.keys[key] != res {
		return // the session ended and cleared it
	}
	if len(res.waiters) == 0 {
		delete(r.keys, key)
		return
	}
	next := res.waiters[0]
	res.waiters = res.waiters[1:]
	close(next)
}

// clear ends every reservation when the session ends; waiters learn it
// from the session's context.
func (r *reservations) clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = true
	r.keys = nil
}
