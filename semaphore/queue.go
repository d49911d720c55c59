package semaphore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// The queue is the set of keys under prefix/, ordered by create revision.
// A key whose position (the number of keys created before it) is under
// the limit holds a permit; the others wait. Positions only ever go down
// (new keys are created behind every existing one), so a key that holds
// keeps holding until it is deleted, and at any revision at most limit keys
// hold.
//
// Each acquisition gets its own key, prefix/<lease hex>-<random hex>, so two
// goroutines of one session hold two permits; the lease in the name tells an
// operator whose key it is. Every key's value is the limit its client uses.

// ticket is one acquisition's place in the queue.
type ticket struct {
	m     *Semaphore
	key   string
	rev   int64 // create revision of key
	first view  // what the enqueuing transaction saw
}

// view is what one read of the queue showed about the keys ahead of ours.
type view struct {
	ahead []*mvccpb.KeyValue // keys created before ours, nearest first; at most limit+1
	rev   int64              // header revision of the read
}

// enqueue creates our key and reads the keys just ahead of it in the same
// transaction: one round trip, which is all an uncontended Acquire costs.
// Our key is the newest under the prefix, so the newest limit+2 keys are our
// own and the limit+1 nearest ahead of it: enough to tell whether we hold
// (fewer than limit ahead), are first in line (exactly limit) or wait
// behind another waiter.
//
// A transient failure (leader election, unreachable member) is retried with
// backoff. The failed write may have been applied without our seeing it, so
// its key is deleted in the retry's own transaction.
func (m *Semaphore) enqueue(ctx context.Context) (*ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.s.Err() != nil {
		return nil, m.sessionErr()
	}
	for attempt := 0; ; {
		key := fmt.Sprintf("%s/%x-%016x", m.prefix, int64(m.s.Lease()), rand.Uint64())
		orphans := m.takeOrphans()
		ops := make([]clientv3.Op, 0, len(orphans)+2)
		for _, o := range orphans {
			// Names are never reused, so an unguarded delete touches only ours.
			ops = append(ops, clientv3.OpDelete(o))
		}
		ops = append(ops,
			clientv3.OpPut(key, m.value, clientv3.WithLease(m.s.Lease())),
			clientv3.OpGet(keys.Dir(m.prefix),
				clientv3.WithPrefix(),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
				clientv3.WithLimit(int64(m.limit)+2)))
		resp, err := m.s.Client().Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(ops...).
			Commit()
		if err != nil {
			m.putOrphans(append(orphans, key))
			if retry.Transient(err) && ctx.Err() == nil {
				if perr := m.pause(ctx, attempt); perr == nil {
					attempt++
					continue
				}
			}
			m.cleanupOrphans(ctx)
			return nil, ctxErr(ctx, m.writeErr(err))
		}
		if !resp.Succeeded {
			// A random 64-bit name already taken: pick another.
			m.putOrphans(orphans)
			continue
		}
		kvs := resp.Responses[len(resp.Responses)-1].GetResponseRange().Kvs
		rev := resp.Header.Revision
		if len(kvs) == 0 || string(kvs[0].Key) != key || kvs[0].CreateRevision != rev {
			m.cleanup(ctx, key, rev)
			return nil, fmt.Errorf("semaphore: %s: our new key %s is not the newest under the prefix", m.prefix, key)
		}
		t := &ticket{m: m, key: key, rev: rev, first: view{ahead: kvs[1:], rev: rev}}
		if err := m.agree(t.first.ahead); err != nil {
			m.cleanup(ctx, key, rev)
			return nil, err
		}
		return t, nil
	}
}

// read reads the queue again: our key and the limit+1 keys nearest ahead of
// it. The range stops at our create revision, so our key comes first if it
// still exists, which is how a waiter learns that it was deleted. Transient
// failures are retried: a waiter must not lose its place to an election.
func (t *ticket) read(ctx context.Context) (view, error) {
	for attempt := 0; ; attempt++ {
		resp, err := t.m.s.Client().Get(ctx, keys.Dir(t.m.prefix),
			clientv3.WithPrefix(),
			clientv3.WithMaxCreateRev(t.rev),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
			clientv3.WithLimit(int64(t.m.limit)+2))
		if err != nil {
			if retry.Transient(err) && ctx.Err() == nil {
				if perr := t.m.pause(ctx, attempt); perr != nil {
					return view{}, perr
				}
				continue
			}
			return view{}, ctxErr(ctx, fmt.Errorf("semaphore: read %s: %w", t.m.prefix, err))
		}
		if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != t.key {
			return view{}, t.m.keyGone(ctx, t.key)
		}
		return view{ahead: resp.Kvs[1:], rev: resp.Header.Revision}, nil
	}
}

// agree checks that every key read records this client's limit. A permit
// is only granted after every key ahead of it was read and agreed, so two
// clients that disagree never hold permits at the same time.
func (m *Semaphore) agree(kvs []*mvccpb.KeyValue) error {
	for _, kv := range kvs {
		if string(kv.Value) != m.value {
			return fmt.Errorf("%w: %s records limit %q, this client uses %d", ErrLimitMismatch, kv.Key, kv.Value, m.limit)
		}
	}
	return nil
}

// keyGone explains why our key disappeared: the session's lease ended (it
// may not know yet, so ask the server), or someone deleted it.
func (m *Semaphore) keyGone(ctx context.Context, key string) error {
	if m.s.Err() != nil {
		return m.sessionErr()
	}
	resp, err := m.s.Client().TimeToLive(ctx, m.s.Lease())
	if err == nil && resp.TTL <= 0 {
		return fmt.Errorf("semaphore: %w: lease %x no longer exists", lockstep.ErrSessionLost, int64(m.s.Lease()))
	}
	return fmt.Errorf("semaphore: %w: key %s deleted while waiting", lockstep.ErrLost, key)
}

// writeErr names a write that failed because the lease is gone for what it
// is: a lost session.
func (m *Semaphore) writeErr(err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("semaphore: %w: lease %x not found on the server", lockstep.ErrSessionLost, int64(m.s.Lease()))
	}
	return fmt.Errorf("semaphore: write %s: %w", m.prefix, err)
}
