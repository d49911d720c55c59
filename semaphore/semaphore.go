package semaphore

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// cleanupTimeout bounds the delete of a key left by an acquisition that
// failed or was cancelled; it runs after the caller's ctx has ended.
const cleanupTimeout = 5 * time.Second

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

	mu      sync.Mutex
	orphans []string // keys whose cleanup failed; the next acquisition deletes them
}

// New returns a semaphore with limit permits under prefix. Every client of
// the same prefix must use the same limit (see ErrLimitMismatch). New does
// no I/O. It fails with lockstep.ErrNilSession, an error wrapping the
// session's Err if it already ended, lockstep.ErrInvalidPrefix for an empty
// prefix or one ending in "/", and ErrInvalidLimit for a limit that is not
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
	resp, err := m.s.Client().Get(ctx, keys.Dir(m.prefix),
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

// cleanup removes the key of an acquisition that did not succeed, guarded
// by its create revision, under its own bounded context because the
// caller's may have ended. A key that cannot be deleted now is remembered
// and deleted by the next acquisition's transaction; failing that, it goes
// with the session's lease.
func (m *Semaphore) cleanup(ctx context.Context, key string, rev int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := m.s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil && m.s.Err() == nil {
		m.putOrphans([]string{key})
	}
}

// cleanupOrphans deletes the keys of writes whose outcome we did not see,
// under its own bounded context. Their names are never reused, so an
// unguarded delete touches only ours.
func (m *Semaphore) cleanupOrphans(ctx context.Context) {
	orphans := m.takeOrphans()
	if len(orphans) == 0 || m.s.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	ops := make([]clientv3.Op, len(orphans))
	for i, o := range orphans {
		ops[i] = clientv3.OpDelete(o)
	}
	if _, err := m.s.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
		m.putOrphans(orphans)
	}
}

// takeOrphans returns the keys left by failed cleanups and forgets them;
// putOrphans gives them back if they could not be deleted either.
func (m *Semaphore) takeOrphans() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.orphans
	m.orphans = nil
	return o
}

func (m *Semaphore) putOrphans(o []string) {
	if len(o) == 0 {
		return
	}
	m.mu.Lock()
	m.orphans = append(m.orphans, o...)
	m.mu.Unlock()
}

// sessionErr is the error for a session that ended while we waited.
func (m *Semaphore) sessionErr() error {
	return fmt.Errorf("semaphore: %w", m.s.Err())
}

// pause waits before retry number attempt, or returns why it cannot go on.
func (m *Semaphore) pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(retry.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-m.s.Done():
		return m.sessionErr()
	case <-t.C:
		return nil
	}
}

// ctxErr returns ctx's error unwrapped if ctx ended, else err: a caller
// who cancelled gets exactly ctx.Err().
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
