package semaphore

import (
	"context"
	"fmt"
	"math"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Semaphore is a counting semaphore with a fixed number of permits shared
// by every client that uses the same prefix and limit. Permits are granted
// in the order they were asked for; each one is attached to the session's
// lease, so a crashed holder's permit is freed when its lease expires.
//
// A Semaphore is safe for concurrent use; two goroutines that acquire
// through the same Semaphore (or the same session) hold two separate
// permits.
type Semaphore struct {
	s      *lockstep.Session
	prefix string
	limit  int
	value  string // the limit as every key of this client records it
}

// New returns a semaphore with limit permits under prefix. Every client of
// the same prefix must use the same limit (see ErrLimitMismatch). New does
// no I/O. It fails with lockstep.ErrNilSession, an error wrapping the
// session's Err if it already ended, lockstep.ErrInvalidPrefix for an empty
// prefix, "/" or one ending in "//", and ErrInvalidLimit for a limit that is not
// between 1 and math.MaxInt32.
func New(s *lockstep.Session, prefix string, limit int) (*Semaphore, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("semaphore: %w", err)
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("semaphore: %w", err)
	}
	if limit <= 0 || limit > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d (want 1 to %d)", ErrInvalidLimit, limit, math.MaxInt32)
	}
	return &Semaphore{s: s, prefix: prefix, limit: limit, value: strconv.Itoa(limit)}, nil
}

// Limit returns the number of permits.
func (m *Semaphore) Limit() int { return m.limit }

// Prefix returns the prefix the semaphore's keys live under.
func (m *Semaphore) Prefix() string { return m.prefix }

// Acquire blocks until it holds a permit, ctx ends, or the session ends.
// Permits are granted in the order Acquire and TryAcquire calls reached
// etcd. Without contention it costs one round trip.
//
// If ctx ends first it returns ctx.Err() and removes its place in the
// queue; if the session ends first it returns an error wrapping the
// session's Err. It returns ErrLimitMismatch if a client with another limit
// for this prefix holds or waits.
func (m *Semaphore) Acquire(ctx context.Context) (*Permit, error) {
	t, err := m.enqueue(ctx)
	if err != nil {
		return nil, err
	}
	p, err := t.wait(ctx)
	if err != nil {
		m.cleanup(ctx, t.key, t.rev)
		return nil, err
	}
	return p, nil
}

// TryAcquire takes a permit if one is free and nobody is waiting for one;
// otherwise it returns ErrNoPermit without waiting. It costs one round trip
// when it succeeds and two when it does not (the second removes its key).
func (m *Semaphore) TryAcquire(ctx context.Context) (*Permit, error) {
	t, err := m.enqueue(ctx)
	if err != nil {
		return nil, err
	}
	if len(t.first.ahead) >= m.limit {
		m.cleanup(ctx, t.key, t.rev)
		return nil, fmt.Errorf("%w: all %d permits of %s are held or waited for", ErrNoPermit, m.limit, m.prefix)
	}
	return t.grant(ctx, false, t.first.rev)
}

// Holder describes one held permit.
type Holder struct {
	Key   string           // the permit's etcd key
	Lease clientv3.LeaseID // the holder's session lease
	Token int64            // the permit's fencing token (its key's create revision)
}

// Holders returns the current holders, oldest first, in one round trip. It
// returns ErrLimitMismatch if one of them records a different limit.
func (m *Semaphore) Holders(ctx context.Context) ([]Holder, error) {
	resp, err := rpc.Get(ctx, m.s.Client(), nil, keys.Dir(m.prefix),
		clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend),
		clientv3.WithLimit(int64(m.limit)))
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("semaphore: read %s: %w", m.prefix, err))
	}
	if err := m.agree(resp.Kvs); err != nil {
		return nil, err
	}
	hs := make([]Holder, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		hs[i] = Holder{Key: string(kv.Key), Lease: clientv3.LeaseID(kv.Lease), Token: kv.CreateRevision}
	}
	return hs, nil
}

// newPermit starts tracking a permit whose key was created at rev; fromRev
// is the first revision the caller has not seen.
func (m *Semaphore) newPermit(key string, rev, fromRev int64) *Permit {
	h := own.New(m.s, key, rev, fromRev, nil)
	return &Permit{Ownership: h, h: h}
}

// cleanup removes the key of an acquisition that did not succeed, if rev
// is its create revision, or (rev 0) if a put whose answer never came may
// have created it: such a put may still be in flight, and the session
// looks again once it cannot be. It runs under its own bounded context,
// the caller's may have ended, and hands what it cannot finish to the
// session.
func (m *Semaphore) cleanup(ctx context.Context, key string, rev int64) {
	c := rpc.Cleanup{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", rev)},
		Then: []clientv3.Op{clientv3.OpDelete(key)},
	}
	if rev == 0 {
		c.If = []clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", m.s.Lease())}
		c.Recheck = rpc.InFlight
	}
	rpc.Sweep(ctx, m.s.Client(), m.s, c)
}

// sessionErr is the error for a session that ended while we waited.
func (m *Semaphore) sessionErr() error {
	return fmt.Errorf("semaphore: %w", m.s.Err())
}

// ctxErr returns ctx's error unwrapped if ctx ended, else err: a caller
// who cancelled gets exactly ctx.Err().
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
