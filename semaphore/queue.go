package semaphore

import (
	"context"
	"fmt"
	"math/rand/v2"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/rpc"
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
// Errors that may pass are retried with the same key, so an attempt whose
// answer was lost is found by the retry (the Else branch) and keeps its
// place; the keys ahead of it are read then.
func (m *Semaphore) enqueue(ctx context.Context) (*ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.s.Err() != nil {
		return nil, m.sessionErr()
	}
	key := fmt.Sprintf("%s/%x-%016x", m.prefix, int64(m.s.Lease()), rand.Uint64())
	res, err := rpc.Commit(ctx, m.s.Client(), m.s, rpc.Txn{
		If: []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		Then: []clientv3.Op{
			clientv3.OpPut(key, m.value, clientv3.WithLease(m.s.Lease())),
			clientv3.OpGet(keys.Dir(m.prefix),
				clientv3.WithPrefix(),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
				clientv3.WithLimit(int64(m.limit)+2)),
		},
		Else: []clientv3.Op{clientv3.OpGet(key)},
	})
	if err != nil {
		if res.Retried {
			m.cleanup(ctx, key, 0)
		}
		return nil, ctxErr(ctx, m.writeErr(err))
	}
	if !res.Succeeded {
		// An earlier attempt created our key.
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil, fmt.Errorf("semaphore: %w: key %s deleted as it was written", lockstep.ErrLost, key)
		}
		t := &ticket{m: m, key: key, rev: kvs[0].CreateRevision}
		if t.first, err = t.read(ctx); err == nil {
			err = m.agree(t.first.ahead)
		}
		if err != nil {
			m.cleanup(ctx, key, t.rev)
			return nil, err
		}
		return t, nil
	}
	kvs := res.Responses[1].GetResponseRange().Kvs
	rev := res.Header.Revision
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

// read reads the queue again: our key and the limit+1 keys nearest ahead of
// it. The range stops at our create revision, so our key comes first if it
// still exists, which is how a waiter learns that it was deleted. Failures
// that may pass are retried: a waiter must not lose its place to an
// election.
func (t *ticket) read(ctx context.Context) (view, error) {
	resp, err := rpc.Get(ctx, t.m.s.Client(), t.m.s, keys.Dir(t.m.prefix),
		clientv3.WithPrefix(),
		clientv3.WithMaxCreateRev(t.rev),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
		clientv3.WithLimit(int64(t.m.limit)+2))
	if err != nil {
		return view{}, ctxErr(ctx, t.m.writeErr(err))
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != t.key {
		return view{}, t.m.keyGone(t.key)
	}
	return view{ahead: resp.Kvs[1:], rev: resp.Header.Revision}, nil
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

// keyGone explains why our key disappeared: the session's lease ended, or
// someone deleted it.
func (m *Semaphore) keyGone(key string) error {
	return fmt.Errorf("semaphore: %s: %w", m.prefix, rpc.Gone(m.s, key))
}

// writeErr names a failed request: the session's end, or etcd's error.
func (m *Semaphore) writeErr(err error) error {
	return fmt.Errorf("semaphore: %s: %w", m.prefix, err)
}
