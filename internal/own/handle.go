// Package own implements the ownership contract (lockstep.Ownership) once,
// for every primitive: a key created at a known revision under a session,
// a watcher that notices when someone else deletes it, and a guarded
// release.
package own

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// cleanupTimeout bounds the best-effort delete of a key whose session was
// lost: the caller may be giving up on a server it cannot reach.
const cleanupTimeout = 2 * time.Second

// Handle is one held ownership. Primitives embed it in their handle type
// (mutex.Lock, semaphore.Permit, ...) to get Done, Err, Token, Key and
// IsOwner.
type Handle struct {
	s     *lockstep.Session
	key   string
	rev   int64
	onEnd func()

	done      chan struct{}
	fromRev   int64
	watchCtx  context.Context // ends when ownership ends; not a caller's
	stopWatch context.CancelFunc
	startOnce sync.Once // starts the watcher, or marks it never to start
	watchDone chan struct{}

	mu        sync.Mutex
	err       error
	releasing int  // Release transactions in flight
	deleted   bool // the watcher saw the key go while one was
}

// New starts tracking the ownership of key, created at revision rev under
// s. fromRev is the first revision the caller has not seen (the header
// revision of the write or read that made it the owner, plus one). onEnd,
// if not nil, runs once when ownership ends, whatever the reason.
func New(s *lockstep.Session, key string, rev, fromRev int64, onEnd func()) *Handle {
	h := NewLazy(s, key, rev, fromRev, onEnd)
	h.watching()
	return h
}

// NewLazy is New, except that the watcher starts only the first time the
// owner asks how its ownership is doing (Done or Err), from fromRev, so it
// misses nothing. An owner that never asks pays for no watch (a watch costs
// about as much CPU as an uncontended lock), and Release's guard catches a
// loss anyway. Until then, a loss ends the handle (and runs onEnd) only
// when Release finds it.
func NewLazy(s *lockstep.Session, key string, rev, fromRev int64, onEnd func()) *Handle {
	ctx, cancel := context.WithCancel(context.Background())
	return &Handle{
		s:         s,
		key:       key,
		rev:       rev,
		onEnd:     onEnd,
		done:      make(chan struct{}),
		fromRev:   fromRev,
		watchCtx:  ctx,
		stopWatch: cancel,
		watchDone: make(chan struct{}),
	}
}

// watching starts the watcher unless it runs or ownership ended.
func (h *Handle) watching() {
	h.startOnce.Do(func() { go h.watch(h.watchCtx, h.fromRev) })
}

// watch ends the ownership when the session ends or the key goes. It is
// stopped by end.
func (h *Handle) watch(ctx context.Context, fromRev int64) {
	defer close(h.watchDone)
	gone := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { gone <- waitfor.Gone(wctx, h.s.Client(), h.key, h.rev, fromRev) }()
	select {
	case <-ctx.Done():
		cancel()
		<-gone
	case <-h.s.Done():
		cancel()
		<-gone
		h.end(h.s.Err())
	case err := <-gone:
		if err != nil {
			// Gone gives up only when the client is closed. The session
			// cannot renew its lease either and ends at its deadline:
			// end with it, or Done would never close.
			select {
			case <-ctx.Done():
			case <-h.s.Done():
				h.end(h.s.Err())
			}
			return
		}
		if !h.deletedWhileReleasing() {
			h.end(h.whyGone())
		}
	}
}

// deletedWhileReleasing reports whether a Release is in flight when the
// watcher sees the key go. The delete is then most likely that Release's
// own, whose answer is on its way: explaining it here would cost a round
// trip that Release waits for, and could mislabel it ErrLost. Release
// explains it instead if its transaction fails.
func (h *Handle) deletedWhileReleasing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.releasing > 0 {
		h.deleted = true
		return true
	}
	return false
}

// whyGone explains a deleted key. A lease that expired or was revoked
// deletes every key of the session, and the session may not have noticed
// yet: ask the server before blaming someone else.
func (h *Handle) whyGone() error {
	if err := h.s.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	resp, err := h.s.Client().TimeToLive(ctx, h.s.Lease())
	if err == nil && resp.TTL <= 0 {
		return fmt.Errorf("%w: lease %x no longer exists", lockstep.ErrSessionLost, int64(h.s.Lease()))
	}
	return fmt.Errorf("%w: key %s deleted", lockstep.ErrLost, h.key)
}

// Done is closed when ownership ends.
func (h *Handle) Done() <-chan struct{} {
	h.watching()
	return h.done
}

// Err is nil while ownership holds, then the reason it ended.
func (h *Handle) Err() error {
	h.watching()
	return h.reason()
}

// reason is Err without starting the watcher.
func (h *Handle) reason() error {
	h.mu.Lock()
	err := h.err
	h.mu.Unlock()
	if err != nil {
		return err
	}
	// The session's expiry timer may not have fired yet on a busy machine;
	// the session knows its own deadline.
	if serr := h.s.Err(); serr != nil {
		h.End(serr)
		return h.reason()
	}
	return nil
}

// Token is the fencing token: the key's create revision.
func (h *Handle) Token() int64 { return h.rev }

// Key is the etcd key that represents the ownership.
func (h *Handle) Key() string { return h.key }

// Session is the session the ownership belongs to.
func (h *Handle) Session() *lockstep.Session { return h.s }

// IsOwner holds in a Txn only while the key is the incarnation this handle
// owns.
func (h *Handle) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(h.key), "=", h.rev)
}

// End ends the ownership with err, unless it already ended, and waits for
// the watcher to stop.
func (h *Handle) End(err error) {
	h.end(err)
	<-h.watchDone
}

// end records the first reason, closes Done, stops the watcher without
// waiting for it (it may be the caller) and runs onEnd.
func (h *Handle) end(err error) {
	h.mu.Lock()
	if h.err != nil {
		h.mu.Unlock()
		return
	}
	h.err = err
	close(h.done)
	h.mu.Unlock()
	h.startOnce.Do(func() { close(h.watchDone) }) // never started: nothing to stop
	h.stopWatch()
	if h.onEnd != nil {
		h.onEnd()
	}
}

// Release deletes the key in one transaction guarded by IsOwner, together
// with any further ops, and ends the ownership with ErrReleased.
//
// If ownership already ended it returns that reason and deletes nothing
// that is not ours: after a session loss it still removes the key if it is
// ours (the lease may outlive our view of it), under its own short timeout.
// If the RPC fails the handle is unchanged and Release can be retried; the
// guard makes a retry safe.
func (h *Handle) Release(ctx context.Context, then ...clientv3.Op) error {
	if err := h.reason(); err != nil {
		if errors.Is(err, lockstep.ErrSessionLost) {
			h.cleanup(ctx)
		}
		return err
	}
	ops := append([]clientv3.Op{clientv3.OpDelete(h.key)}, then...)
	h.mu.Lock()
	h.releasing++
	h.mu.Unlock()
	resp, err := h.s.Client().Txn(ctx).If(h.IsOwner()).Then(ops...).Commit()
	switch {
	case err == nil && resp.Succeeded:
		h.End(lockstep.ErrReleased)
	case err == nil:
		h.End(h.whyGone())
	}
	h.mu.Lock()
	h.releasing--
	deleted := h.deleted && h.releasing == 0
	h.mu.Unlock()
	if err != nil {
		if deleted {
			// The watcher stopped when it saw the key go, leaving the
			// explanation to us; the key went, maybe by this very
			// transaction, maybe not.
			h.End(h.whyGone())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if !resp.Succeeded {
		return h.reason()
	}
	return nil
}

func (h *Handle) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	h.s.Client().Txn(ctx).If(h.IsOwner()).Then(clientv3.OpDelete(h.key)).Commit()
}
