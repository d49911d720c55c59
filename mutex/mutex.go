package mutex

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/ctxs"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// cleanupTimeout bounds the deletes that run after the caller's context
// ended: giving up a place in the queue, and the unlock of Do.
const cleanupTimeout = 5 * time.Second

// Mutex is a distributed exclusive lock named by a key prefix. It is cheap:
// New does no I/O, and a Mutex holds no resources until Lock or TryLock
// succeeds. A Mutex is safe for concurrent use; goroutines that share it (or
// its session) exclude each other.
type Mutex struct {
	s      *lockstep.Session
	prefix string
	dir    string // prefix + "/": the range that holds the queue
	key    string // this session's key in the queue
}

// New returns the mutex named prefix for session s. Keys are laid out as
// etcd's concurrency.Mutex lays them out, so the two, and etcdctl lock,
// exclude each other on the same prefix.
//
// It returns lockstep.ErrNilSession for a nil session, an error wrapping
// the session's Err if it already ended, and one wrapping
// lockstep.ErrInvalidPrefix for an empty prefix or one ending in "/".
func New(s *lockstep.Session, prefix string) (*Mutex, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("mutex: %w", err)
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	return &Mutex{s: s, prefix: prefix, dir: keys.Dir(prefix), key: keys.Lease(prefix, s.Lease())}, nil
}

// Lock blocks until it holds the mutex, ctx ends or the session ends.
// Waiters are served in the order they called Lock (first come, first
// served across all clients); each watches only the waiter just ahead of it.
//
// Uncontended, Lock costs one round trip. A waiter whose predecessor holds
// the lock becomes the holder on that key's delete event, with no further
// read.
//
// Errors that may pass (no leader, a member restarting, a broken
// connection) are retried with backoff; others are returned. If ctx ends
// first, Lock returns ctx's error and removes its place in the queue. If the session ends or its key is deleted while it waits, Lock
// returns an error wrapping the reason (lockstep.ErrSessionLost,
// lockstep.ErrSessionClosed, lockstep.ErrLost); it does not return a lock
// after its session has ended (see the package documentation for the one
// narrow exception, which fencing covers).
//
// The lock is not reentrant: a goroutine that calls Lock again on a mutex
// of the same session and prefix before unlocking waits for itself until
// ctx ends.
func (m *Mutex) Lock(ctx context.Context) (*Lock, error) {
	release, err := own.Reserve(ctx, m.s, m.key)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("mutex: lock %s: %w", m.prefix, err)
	}
	h, at, err := m.enqueue(ctx, release)
	if err != nil {
		return nil, err
	}
	waited := at.pred != nil
	for at.pred != nil {
		if at, err = m.waitPred(ctx, h, at); err != nil {
			return nil, m.abandon(ctx, h, err)
		}
	}
	return m.held(ctx, h, waited)
}

// TryLock takes the mutex if nobody holds it or waits for it, in one round
// trip, and returns ErrLocked otherwise. It never waits for other clients;
// it returns ErrLocked at once if another goroutine of this session holds
// or waits for the mutex.
func (m *Mutex) TryLock(ctx context.Context) (*Lock, error) {
	if err := m.s.Err(); err != nil {
		return nil, fmt.Errorf("mutex: trylock %s: %w", m.prefix, err)
	}
	release, ok := tryReserve(m.s, m.key)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrLocked, m.prefix)
	}
	if ctx.Err() != nil {
		release()
		return nil, ctx.Err()
	}
	// Create our key only if the queue is empty: a busy mutex costs no
	// write and leaves nothing to clean up.
	resp, err := m.s.Client().Txn(ctx).
		If(m.queueEmpty()).
		Then(clientv3.OpPut(m.key, "", clientv3.WithLease(m.s.Lease()))).
		Else(clientv3.OpGet(m.dir, clientv3.WithFirstCreate()...), clientv3.OpGet(m.key)).
		Commit()
	if err != nil {
		return nil, m.failed(ctx, release, "trylock", err)
	}
	rev := resp.Header.Revision
	if resp.Succeeded {
		return m.held(ctx, own.NewLazy(m.s, m.key, rev, rev+1, release), false)
	}
	owner := resp.Responses[0].GetResponseRange().Kvs
	if len(owner) > 0 && string(owner[0].Key) == m.key {
		// Our own key from an earlier attempt whose cleanup failed is
		// the oldest: it is ours, so we hold the mutex.
		return m.held(ctx, own.NewLazy(m.s, m.key, owner[0].CreateRevision, rev+1, release), false)
	}
	if mine := resp.Responses[1].GetResponseRange().Kvs; len(mine) > 0 {
		// A stale waiter key of ours would hold up everyone queued
		// behind it until our lease expires.
		m.forget(ctx, mine[0].CreateRevision)
	}
	release()
	return nil, fmt.Errorf("%w: %s", ErrLocked, m.prefix)
}

// held returns h as a Lock unless its ownership already ended. A waiter's
// handle is already watching its key; asking an uncontended one would
// start a watch nobody may need (see Lock.Done), so only the session is
// checked there.
func (m *Mutex) held(ctx context.Context, h *own.Handle, waited bool) (*Lock, error) {
	err := m.s.Err()
	if waited {
		err = h.Err()
	}
	if err != nil {
		return nil, m.abandon(ctx, h, fmt.Errorf("mutex: lock %s: %w", m.prefix, err))
	}
	return &Lock{Ownership: h, h: h}, nil
}

// queueEmpty holds in a Txn when no key, and so no holder or waiter, is
// under the mutex's prefix.
func (m *Mutex) queueEmpty() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(m.dir), "=", 0).WithPrefix()
}

// place is where our key stands in the queue, as of one read.
type place struct {
	rev         int64            // header revision of the read
	pred        *mvccpb.KeyValue // the key created just before ours; nil: ours is the oldest
	predIsOwner bool             // pred was the oldest key: its deletion makes us the owner
}

// enqueue creates our key, unless it exists, and finds our predecessor and
// whether it is the owner in the same transaction: one round trip. It starts the
// handle that tracks the key, which owns release from then on.
func (m *Mutex) enqueue(ctx context.Context, release func()) (*own.Handle, place, error) {
	if err := m.s.Err(); err != nil {
		release()
		return nil, place{}, fmt.Errorf("mutex: lock %s: %w", m.prefix, err)
	}
	if ctx.Err() != nil {
		release()
		return nil, place{}, ctx.Err()
	}
	// An empty queue, the uncontended case, needs no read: the compare
	// proves that our new key is the oldest. Otherwise the put says
	// whether our key already existed, and the two newest keys are ours
	// and our predecessor; the range's count (of all keys, not just the
	// two returned) says whether that predecessor is the owner.
	put := clientv3.OpPut(m.key, "", clientv3.WithLease(m.s.Lease()))
	putOrKeep := clientv3.OpPut(m.key, "", clientv3.WithLease(m.s.Lease()), clientv3.WithPrevKV())
	newest := clientv3.OpGet(m.dir, append(clientv3.WithLastCreate(), clientv3.WithLimit(2))...)
	// A failure that may pass (the member restarting, an election) is
	// retried: if the failed attempt did create our key, the retry finds
	// it (the Else branch) and keeps its place.
	cli := m.s.Client()
	sctx, stop := ctxs.EndWith(ctx, m.s.Done(), nil) // an attempt ends with the session
	defer stop()
	var resp *clientv3.TxnResponse
	for attempt := 0; ; attempt++ {
		var err error
		resp, err = cli.Txn(sctx).If(m.queueEmpty()).Then(put).Else(putOrKeep, newest).Commit()
		if err == nil {
			break
		}
		if serr := m.s.Err(); serr != nil {
			err = serr
		}
		if ctx.Err() != nil || cli.Ctx().Err() != nil || !retry.Transient(err) {
			return nil, place{}, m.failed(ctx, release, "lock", err)
		}
		if err := pause(ctx, attempt, m.s.Done(), m.s.Err); err != nil {
			return nil, place{}, m.failed(ctx, release, "lock", err)
		}
	}
	rev := resp.Header.Revision
	if resp.Succeeded {
		return own.NewLazy(m.s, m.key, rev, rev+1, release), place{rev: rev}, nil
	}
	if prev := resp.Responses[0].GetResponsePut().PrevKv; prev != nil {
		// Our key survived an earlier attempt (one whose cleanup failed,
		// or a retried one that did create it). The put left its create
		// revision, and so its place, alone; find out what that place is.
		h := own.NewLazy(m.s, m.key, prev.CreateRevision, rev+1, release)
		at, err := m.position(ctx, h)
		if err != nil {
			return nil, place{}, m.abandon(ctx, h, err)
		}
		return h, at, nil
	}
	h := own.NewLazy(m.s, m.key, rev, rev+1, release)
	at := place{rev: rev}
	r := resp.Responses[1].GetResponseRange()
	if len(r.Kvs) == 2 {
		at.pred = r.Kvs[1]
		at.predIsOwner = r.Count == 2
	}
	return h, at, nil
}

// position reads, in one round trip, whether our key is still there, who
// owns the mutex and which key was created just before ours. A read that
// fails for a reason that may pass (a member restarting, an election) is
// retried with backoff, so that a waiter keeps its place through a
// failover. It gives up when ctx, the place in the queue or the client
// ends, also in the middle of an attempt.
func (m *Mutex) position(ctx context.Context, h *own.Handle) (place, error) {
	cli := m.s.Client()
	// An attempt can wait for a connection that never comes (a member cut
	// off): it ends with our place too.
	qctx, stop := ctxs.EndWith(ctx, h.Done(), nil)
	defer stop()
	for attempt := 0; ; attempt++ {
		resp, err := cli.Txn(qctx).Then(
			clientv3.OpGet(m.key),
			clientv3.OpGet(m.dir, clientv3.WithFirstCreate()...),
			clientv3.OpGet(m.dir, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(h.Token()-1))...),
		).Commit()
		switch {
		case err == nil:
			return m.placeIn(ctx, h, resp)
		case h.Err() != nil:
			return place{}, m.ended(h)
		case ctx.Err() != nil:
			return place{}, ctx.Err()
		case cli.Ctx().Err() != nil:
			return place{}, fmt.Errorf("mutex: lock %s: client closed: %w", m.prefix, cli.Ctx().Err())
		case !retry.Transient(err):
			return place{}, fmt.Errorf("mutex: read queue of %s: %w", m.prefix, err)
		}
		if err := pause(ctx, attempt, h.Done(), func() error { return m.ended(h) }); err != nil {
			return place{}, err
		}
	}
}

// pause waits before retry number attempt, or returns why it cannot go
// on: ctx's end, or reason once end closes (the session's end, or the end
// of our place in the queue).
func pause(ctx context.Context, attempt int, end <-chan struct{}, reason func() error) error {
	t := time.NewTimer(retry.Delay(attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-end:
		return reason()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// placeIn reads our place from position's answer.
func (m *Mutex) placeIn(ctx context.Context, h *own.Handle, resp *clientv3.TxnResponse) (place, error) {
	mine := resp.Responses[0].GetResponseRange().Kvs
	if len(mine) == 0 || mine[0].CreateRevision != h.Token() {
		// The handle's watch saw the delete too and finds out whether
		// our lease was revoked or someone deleted the key.
		return place{}, m.lost(ctx, h)
	}
	at := place{rev: resp.Header.Revision}
	if preds := resp.Responses[2].GetResponseRange().Kvs; len(preds) > 0 {
		first := resp.Responses[1].GetResponseRange().Kvs
		at.pred = preds[0]
		at.predIsOwner = len(first) > 0 && first[0].CreateRevision == preds[0].CreateRevision
	}
	return at, nil
}

// abandon gives up our place in the queue: it deletes our key under its
// own bounded context (the caller's may have ended) and ends the handle,
// which releases the in-process reservation. It returns cause.
func (m *Mutex) abandon(ctx context.Context, h *own.Handle, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	h.Release(cctx)
	// If the delete failed, the lease will remove the key; the place is
	// given up all the same. (A no-op if Release ended it.)
	h.End(cause)
	return cause
}

// failed handles a failed create: the put may have been applied even though
// we got no answer, so our key is deleted. That is safe without a guard
// because the key carries our lease and we hold the reservation: no other
// goroutine of this session uses it.
func (m *Mutex) failed(ctx context.Context, release func(), op string, err error) error {
	m.forget(ctx, 0)
	release()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease expired or was revoked before the session noticed.
		return fmt.Errorf("mutex: %s %s: %w: %w", op, m.prefix, lockstep.ErrSessionLost, err)
	}
	return fmt.Errorf("mutex: %s %s: %w", op, m.prefix, err)
}

// forget deletes our key under a bounded context; if rev is not zero, only
// the incarnation created at rev.
func (m *Mutex) forget(ctx context.Context, rev int64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	txn := m.s.Client().Txn(cctx)
	if rev != 0 {
		txn = txn.If(clientv3.Compare(clientv3.CreateRevision(m.key), "=", rev))
	}
	txn.Then(clientv3.OpDelete(m.key)).Commit()
}

// tryReserve claims the in-process reservation of key if it is free,
// without waiting.
func tryReserve(s *lockstep.Session, key string) (release func(), ok bool) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	release, err := own.Reserve(done, s, key)
	return release, err == nil
}
