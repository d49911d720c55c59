package mutex

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/line"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Mutex is a distributed exclusive lock named by a key prefix. It is cheap:
// New does no I/O, and a Mutex holds no resources until Lock or TryLock
// succeeds. A Mutex is safe for concurrent use; goroutines that share it (or
// its session) exclude each other, first come first served.
type Mutex struct {
	s      *lockstep.Session
	prefix string
	line   line.Line
}

// New returns the mutex named prefix for session s. Keys are laid out as
// etcd's concurrency.Mutex lays them out (prefix + "/" + lease in hex; a
// prefix that ends in "/" gets a second one, as there), so the two, and
// etcdctl lock, exclude each other on the same prefix.
//
// It returns lockstep.ErrNilSession for a nil session, an error wrapping
// the session's Err if it already ended, and one wrapping
// lockstep.ErrInvalidPrefix for a prefix keys.CheckPrefix refuses.
func New(s *lockstep.Session, prefix string) (*Mutex, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("mutex: %w", err)
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("mutex: %w", err)
	}
	return &Mutex{s: s, prefix: prefix, line: line.Line{S: s, Dir: keys.Dir(prefix), Key: keys.Lease(prefix, s.Lease())}}, nil
}

// Lock blocks until it holds the mutex, ctx ends or the session ends.
// Waiters are served in the order their keys were created, across all
// clients; each watches only the waiter just ahead of it. A session has one
// key per mutex, so its goroutines take turns, in the order they called
// Lock, and each enters the line when the one before it is done.
//
// Uncontended, Lock costs one round trip. A waiter whose predecessor holds
// the lock becomes the holder on that key's delete event, with no further
// read.
//
// Errors that may pass (no leader, a member restarting, a broken
// connection) are retried with backoff, and a retry finds the key an
// attempt whose answer was lost created. If ctx ends first, Lock returns
// ctx's error and its key is deleted (by the session, if the network is
// down now). If the session ends or its key is deleted while it waits,
// Lock returns an error wrapping the reason (lockstep.ErrSessionLost,
// lockstep.ErrSessionClosed, lockstep.ErrLost); it does not return a lock
// after its session has ended (see the package documentation for the one
// narrow exception, which fencing covers).
//
// The lock is not reentrant: a goroutine that calls Lock again on a mutex
// of the same session and prefix before unlocking waits for itself until
// ctx ends.
func (m *Mutex) Lock(ctx context.Context) (*Lock, error) {
	if err := m.s.Err(); err != nil {
		return nil, m.fail(ctx, "lock", err)
	}
	release, err := own.Reserve(ctx, m.s, m.line.Key)
	if err != nil {
		return nil, m.fail(ctx, "lock", err)
	}
	h, at, err := m.line.Enter(ctx, "", release)
	if err != nil {
		return nil, m.fail(ctx, "lock", err)
	}
	f, err := m.line.Wait(ctx, h, at)
	if err != nil {
		return nil, m.fail(ctx, "lock", h.Abandon(ctx, err))
	}
	return m.held(ctx, h, f.KV != nil)
}

// TryLock takes the mutex if nobody holds it or waits for it, in one round
// trip, and returns ErrLocked otherwise. It never waits for other clients;
// it returns ErrLocked at once if another goroutine of this session holds
// or waits for the mutex.
func (m *Mutex) TryLock(ctx context.Context) (*Lock, error) {
	if err := m.s.Err(); err != nil {
		return nil, m.fail(ctx, "trylock", err)
	}
	release, ok := own.TryReserve(m.s, m.line.Key)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrLocked, m.prefix)
	}
	// Create our key only if the line is empty: a busy mutex costs no
	// write and leaves nothing to clean up. The Else branch says who holds
	// it, and whether a key of ours is there (a leftover, or the work of an
	// attempt whose answer was lost).
	key := m.line.Key
	res, err := rpc.Commit(ctx, m.s.Client(), m.s, rpc.Txn{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(m.line.Dir), "=", 0).WithPrefix()},
		Then: []clientv3.Op{clientv3.OpPut(key, "", clientv3.WithLease(m.s.Lease()))},
		Else: []clientv3.Op{clientv3.OpGet(m.line.Dir, clientv3.WithFirstCreate()...), clientv3.OpGet(key)},
	})
	if err != nil {
		m.line.Forget(ctx, res.Retried, release)
		return nil, m.fail(ctx, "trylock", err)
	}
	rev := res.Header.Revision
	if res.Succeeded {
		return m.held(ctx, own.NewLazy(m.s, key, rev, rev+1, release), false)
	}
	if oldest := res.Responses[0].GetResponseRange().Kvs; len(oldest) > 0 && string(oldest[0].Key) == key {
		// Our own key is the oldest: it is ours, so we hold the mutex.
		return m.held(ctx, own.NewLazy(m.s, key, oldest[0].CreateRevision, rev+1, release), false)
	}
	if mine := res.Responses[1].GetResponseRange().Kvs; len(mine) > 0 {
		// A stale waiter key of ours would hold up everyone queued
		// behind it until our lease expires.
		own.NewLazy(m.s, key, mine[0].CreateRevision, rev+1, release).Abandon(ctx, lockstep.ErrReleased)
	} else {
		release()
	}
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
		return nil, m.fail(ctx, "lock", h.Abandon(ctx, err))
	}
	return &Lock{Ownership: h, h: h}, nil
}

// fail turns the error of a failed Lock or TryLock into the one to
// return: ctx's own error when ctx ended.
func (m *Mutex) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("mutex: %s %s: %w", op, m.prefix, err)
}
