package barrier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Barrier is a gate: while it is held, Wait blocks; releasing the hold
// opens it for every waiter at once. The barrier is one etcd key, the name
// given to New; it is held while that key exists. etcdctl put and del on
// that key hold and release it too, and so does etcd's recipe.Barrier.
//
// A Barrier is safe for concurrent use.
type Barrier struct {
	cli *clientv3.Client
	key string
	s   *lockstep.Session
}

// Option configures New.
type Option func(*options)

type options struct {
	s       *lockstep.Session
	sessSet bool
}

// WithSession attaches holds to s's lease: if the holder's session ends
// (Close, or a crash and then the lease's expiry), the barrier opens by
// itself. Without it a hold lasts until someone calls Release.
func WithSession(s *lockstep.Session) Option {
	return func(o *options) { o.s, o.sessSet = s, true }
}

// New returns the barrier named key. It does no I/O.
func New(cli *clientv3.Client, key string, opts ...Option) (*Barrier, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	if err := keys.CheckPrefix(key); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.sessSet {
		if o.s == nil {
			return nil, lockstep.ErrNilSession
		}
		if err := o.s.Err(); err != nil {
			return nil, fmt.Errorf("barrier: %w", err)
		}
	}
	return &Barrier{cli: cli, key: key, s: o.s}, nil
}

// Key returns the etcd key that represents the barrier.
func (b *Barrier) Key() string { return b.key }

// Hold closes the barrier: Wait blocks until the hold is released. It
// returns the Hold, which implements lockstep.Ownership, or ErrHeld if the
// barrier is already held, by anyone. One transaction; errors that may
// pass are retried, and a retry recognises a hold that an attempt whose
// answer was lost took (by the nonce it wrote).
func (b *Barrier) Hold(ctx context.Context) (*Hold, error) {
	lease := clientv3.NoLease
	if b.s != nil {
		if err := b.s.Err(); err != nil {
			return nil, fmt.Errorf("barrier: hold %s: %w", b.key, err)
		}
		lease = b.s.Lease()
	}
	nonce := fmt.Sprintf("%x-%016x", int64(lease), rand.Uint64())
	res, err := rpc.Commit(ctx, b.cli, b.s, rpc.Txn{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(b.key), "=", 0)},
		Then: []clientv3.Op{clientv3.OpPut(b.key, nonce, clientv3.WithLease(lease))},
		Else: []clientv3.Op{clientv3.OpGet(b.key)},
	})
	if err != nil {
		if res.Retried {
			// The put may have been applied, or may still be.
			rpc.Sweep(ctx, b.cli, b.s, rpc.Cleanup{
				If:      []clientv3.Cmp{clientv3.Compare(clientv3.Value(b.key), "=", nonce)},
				Then:    []clientv3.Op{clientv3.OpDelete(b.key)},
				Recheck: rpc.InFlight,
			})
		}
		return nil, wrap(ctx, "hold "+b.key, err)
	}
	rev := res.Header.Revision
	if !res.Succeeded {
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 || string(kvs[0].Value) != nonce {
			held := int64(0)
			if len(kvs) == 1 {
				held = kvs[0].CreateRevision
			}
			return nil, fmt.Errorf("%w: %s since revision %d", ErrHeld, b.key, held)
		}
		rev = kvs[0].CreateRevision // ours, from an attempt whose answer was lost
	}
	return b.newHold(rev, res.Header.Revision+1), nil
}

// Release opens the barrier, whoever held it, and wakes every waiter: an
// operator's tool (etcdctl del does the same). A holder releases its own
// hold with Hold.Release, which never opens someone else's. It is not an
// error to release an open barrier. One request.
func (b *Barrier) Release(ctx context.Context) error {
	err := rpc.Do(ctx, b.cli, nil, func(ctx context.Context) error {
		_, err := b.cli.Delete(ctx, b.key)
		return err
	})
	if err != nil {
		return wrap(ctx, "release "+b.key, err)
	}
	return nil
}

// Wait returns at once if the barrier is open, and otherwise when the hold
// it found ends (Release, or the end of the holder's session with
// WithSession), even if the barrier is held again right after. It costs a
// read, and one watch event when it blocks.
func (b *Barrier) Wait(ctx context.Context) error {
	var found int64 // create revision of the hold found by the first read
	for attempt := 0; ; attempt++ {
		err := b.wait(ctx, &found)
		if !errors.Is(err, errResync) {
			return err
		}
		if err := retry.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

func (b *Barrier) wait(ctx context.Context, found *int64) error {
	w, err := arm(ctx, b.cli, nil, b.key, clientv3.WithFilterPut())
	if err != nil {
		return err
	}
	defer w.cancel()
	resp, err := rpc.Get(ctx, b.cli, nil, b.key)
	if err != nil {
		return wrap(ctx, "wait "+b.key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	if *found == 0 {
		*found = resp.Kvs[0].CreateRevision
	} else if resp.Kvs[0].CreateRevision != *found {
		return nil // held again since: the hold we waited for ended
	}
	// The watch started before the read, so it may report a delete the read
	// has already seen; only a later one is the end of the hold we found.
	seen := resp.Header.Revision
	for {
		wr, err := w.next(ctx, nil)
		if err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE && ev.Kv.ModRevision > seen {
				return nil
			}
		}
	}
}
