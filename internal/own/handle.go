// Package own implements the ownership contract (lockstep.Ownership) once,
// for every primitive: a key created at a known revision under a session,
// a watcher that notices when someone else deletes it, the session's end,
// and a guarded release that never leaves the key behind.
package own

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/link"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// Handle is one held ownership. Primitives embed it in their handle type
// (mutex.Lock, semaphore.Permit, ...) to get Done, Err, Token, Key and
// IsOwner.
type Handle struct {
	cli   *clientv3.Client
	s     *lockstep.Session // nil for a key without a lease
	key   string
	rev   int64
	onEnd func()

	done      chan struct{}
	fromRev   int64
	watchCtx  context.Context // ends when ownership ends; not a caller's
	stopWatch context.CancelFunc
	startOnce sync.Once // starts the watcher, or marks it never to start
	watchDone chan struct{}

	mu          sync.Mutex
	stopSession func() bool // stops the session-end callback
	err         error
	releasing   int  // Release transactions in flight
	deleted     bool // the watcher saw the key go while one was
}

// New starts tracking the ownership of key, created at revision rev under
// s. fromRev is the first revision the caller has not seen (the header
// revision of the write or read that made it the owner, plus one). onEnd,
// if not nil, runs once when ownership is over, whatever the reason: after
// the key is gone, or handed to the session to delete and deleted.
func New(s *lockstep.Session, key string, rev, fromRev int64, onEnd func()) *Handle {
	h := NewLazy(s, key, rev, fromRev, onEnd)
	h.watching()
	return h
}

// NewLazy is New, except that the watcher starts only the first time the
// owner asks how its ownership is doing (Done or Err), from fromRev, so it
// misses nothing. An owner that never asks pays for no watch (a watch costs
// about as much CPU as an uncontended lock), and Release's guard catches a
// loss anyway. The session's end ends the handle either way.
func NewLazy(s *lockstep.Session, key string, rev, fromRev int64, onEnd func()) *Handle {
	h := newHandle(s.Client(), s, key, rev, fromRev, onEnd)
	stop := context.AfterFunc(link.Context(s), func() { h.end(s.Err(), true) })
	h.mu.Lock()
	h.stopSession = stop // end, which may already be running, reads it under mu
	h.mu.Unlock()
	return h
}

// Unleased tracks a key that no session owns (it has no lease): it ends
// only when released or deleted by someone else.
func Unleased(cli *clientv3.Client, key string, rev, fromRev int64) *Handle {
	h := newHandle(cli, nil, key, rev, fromRev, nil)
	h.watching()
	return h
}

func newHandle(cli *clientv3.Client, s *lockstep.Session, key string, rev, fromRev int64, onEnd func()) *Handle {
	ctx, cancel := context.WithCancel(context.Background())
	return &Handle{
		cli:         cli,
		s:           s,
		key:         key,
		rev:         rev,
		onEnd:       onEnd,
		done:        make(chan struct{}),
		fromRev:     fromRev,
		watchCtx:    ctx,
		stopWatch:   cancel,
		watchDone:   make(chan struct{}),
		stopSession: func() bool { return false },
	}
}

// watching starts the watcher unless it runs or ownership ended.
func (h *Handle) watching() {
	h.startOnce.Do(func() { go h.watch(h.watchCtx, h.fromRev) })
}

// watch ends the ownership when the key goes. It is stopped by end. The
// session's end is not its business: a callback on the session's context
// ends the handle then.
func (h *Handle) watch(ctx context.Context, fromRev int64) {
	defer close(h.watchDone)
	if err := waitfor.Gone(ctx, h.cli, h.key, h.rev, fromRev); err != nil {
		// Gone gives up only when ctx ends or the client is closed. The
		// session cannot renew its lease either and ends at its deadline,
		// which ends the handle.
		return
	}
	if !h.deletedWhileReleasing() {
		h.end(h.whyGone(), true)
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
	if h.s == nil {
		return fmt.Errorf("%w: key %s deleted", lockstep.ErrLost, h.key)
	}
	return rpc.Gone(h.s, h.key)
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
	if h.s != nil {
		if serr := h.s.Err(); serr != nil {
			h.End(serr)
			return h.reason()
		}
	}
	return nil
}

// Token is the fencing token: the key's create revision.
func (h *Handle) Token() int64 { return h.rev }

// Key is the etcd key that represents the ownership.
func (h *Handle) Key() string { return h.key }

// Session is the session the ownership belongs to; nil for a key without
// a lease.
func (h *Handle) Session() *lockstep.Session { return h.s }

// IsOwner holds in a Txn only while the key is the incarnation this handle
// owns.
func (h *Handle) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(h.key), "=", h.rev)
}

// Gone ends the ownership of a key that a guarded write found gone, with
// the reason (a lease that ended, or someone else's delete), and returns
// that reason.
func (h *Handle) Gone() error {
	h.End(h.whyGone())
	return h.reason()
}

// End ends the ownership with err, unless it already ended, and waits for
// the watcher to stop. It deletes nothing: the key is gone, or goes with
// the session.
func (h *Handle) End(err error) {
	h.end(err, true)
	<-h.watchDone
}

// end records the first reason, closes Done, stops the watcher without
// waiting for it (it may be the caller) and, if finished, runs onEnd. It
// reports whether it ended the handle (false: it had ended already).
func (h *Handle) end(err error, finished bool) bool {
	h.mu.Lock()
	if h.err != nil {
		h.mu.Unlock()
		return false
	}
	h.err = err
	close(h.done)
	stopSession := h.stopSession
	h.mu.Unlock()
	h.startOnce.Do(func() { close(h.watchDone) }) // never started: nothing to stop
	h.stopWatch()
	stopSession()
	if finished && h.onEnd != nil {
		h.onEnd()
	}
	return true
}

// Abandon gives the ownership up with err as its reason, without waiting
// for the key to go: it deletes the key (guarded by the handle's revision)
// under a bounded context of its own and, if that fails while the session
// lives, hands the delete to the session. onEnd runs once the key is gone.
// It returns err.
func (h *Handle) Abandon(ctx context.Context, err error) error {
	if h.end(err, false) {
		<-h.watchDone
		h.sweep(ctx)
	}
	return err
}

// sweep deletes the key if it is still this handle's, now or through the
// session, then runs onEnd.
func (h *Handle) sweep(ctx context.Context) {
	rpc.Sweep(ctx, h.cli, h.s, rpc.Cleanup{
		If:   []clientv3.Cmp{h.IsOwner()},
		Then: []clientv3.Op{clientv3.OpDelete(h.key)},
		Done: h.onEnd,
	})
}

// Release deletes the key in one transaction guarded by IsOwner and ends
// the ownership with lockstep.ErrReleased. Errors that may pass are
// retried while ctx and the session live.
//
// Release never leaves the key behind: if the delete cannot get through
// (ctx ended first, or etcd refused it), the handle ends all the same and
// the delete goes on under a bounded context of its own and then through
// the session; the error says why it did not finish here. If ownership
// already ended it returns that reason; after a session loss it still
// deletes the key if it is ours (the lease may outlive the session's view
// of it).
func (h *Handle) Release(ctx context.Context) error {
	if err := h.reason(); err != nil {
		if errors.Is(err, lockstep.ErrSessionLost) {
			rpc.Sweep(ctx, h.cli, nil, rpc.Cleanup{
				If:   []clientv3.Cmp{h.IsOwner()},
				Then: []clientv3.Op{clientv3.OpDelete(h.key)},
			})
		}
		return err
	}
	// A guard that fails after an attempt whose answer was lost may have
	// failed because of it: the key is gone either way.
	_, err := h.release(ctx, rpc.Txn{If: []clientv3.Cmp{h.IsOwner()}, Then: []clientv3.Op{clientv3.OpDelete(h.key)}},
		func() bool { return true })
	switch {
	case err == nil:
		return h.released()
	case h.s != nil && h.s.Err() != nil:
		return h.Release(ctx) // the session's end explains, and cleans up
	}
	if h.end(lockstep.ErrReleased, false) {
		<-h.watchDone
		h.sweep(ctx)
	}
	return err
}

// released is nil if the handle ended by its release, else the reason it
// ended.
func (h *Handle) released() error {
	if err := h.reason(); !errors.Is(err, lockstep.ErrReleased) {
		return err
	}
	return nil
}

// ReleaseWith commits t, whose guard must include IsOwner, as the end of
// the ownership: an Ack deletes the item with its claim. The handle ends
// (ErrReleased) if t was applied, or if applied says, after the guard
// failed on a retry, that an earlier attempt whose answer was lost was;
// otherwise it ends with the reason it was lost, which is returned. If the
// call fails, the handle is unchanged and the caller may try again.
func (h *Handle) ReleaseWith(ctx context.Context, t rpc.Txn, applied func() bool) (rpc.Result, error) {
	if err := h.reason(); err != nil {
		return rpc.Result{}, err
	}
	res, err := h.release(ctx, t, applied)
	switch {
	case err == nil:
		err = h.released()
	case h.s != nil && h.s.Err() != nil:
		err = h.reason()
	}
	return res, err
}

// release commits t and ends the handle by the answer: ErrReleased if it
// was applied (or applied says an earlier attempt was), the reason the key
// went otherwise. While it runs, the watcher leaves a delete of the key to
// it to explain.
func (h *Handle) release(ctx context.Context, t rpc.Txn, applied func() bool) (rpc.Result, error) {
	h.mu.Lock()
	h.releasing++
	h.mu.Unlock()
	res, err := rpc.Commit(ctx, h.cli, h.s, t)
	switch {
	case err != nil:
	case res.Succeeded || (res.Retried && applied()):
		h.End(lockstep.ErrReleased)
	default:
		h.End(h.whyGone())
	}
	h.mu.Lock()
	h.releasing--
	deleted := h.deleted && h.releasing == 0
	h.mu.Unlock()
	if err != nil && deleted {
		// The watcher stopped when it saw the key go, leaving the
		// explanation to us; the key went, maybe by this very
		// transaction, maybe not.
		h.End(h.whyGone())
	}
	return res, err
}
