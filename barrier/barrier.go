package barrier

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// Barrier is a gate: while it is held, Wait blocks; Release opens it for
// every waiter at once. The barrier is one etcd key, the name given to New;
// it is held while that key exists. etcdctl put and del on that key hold
// and release it too, and so does etcd's recipe.Barrier.
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

// Hold closes the barrier: Wait blocks until Release. It returns ErrHeld if
// the barrier is already held, by anyone. One transaction.
func (b *Barrier) Hold(ctx context.Context) error {
	lease := clientv3.NoLease
	if b.s != nil {
		if err := b.s.Err(); err != nil {
			return fmt.Errorf("barrier: hold %s: %w", b.key, err)
		}
		lease = b.s.Lease()
	}
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(b.key), "=", 0)).
		Then(clientv3.OpPut(b.key, "", clientv3.WithLease(lease))).
		Else(clientv3.OpGet(b.key)).
		Commit()
	switch {
	case err == nil:
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("barrier: hold %s: %w: lease %x not found", b.key, lockstep.ErrSessionLost, int64(lease))
	default:
		return wrap(ctx, "hold "+b.key, err)
	}
	if !resp.Succeeded {
		rev := int64(0)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			rev = kvs[0].CreateRevision
		}
		return fmt.Errorf("%w: %s since revision %d", ErrHeld, b.key, rev)
	}
	return nil
}

// Release opens the barrier, whoever held it, and wakes every waiter. It
// is not an error to release an open barrier. One request.
func (b *Barrier) Release(ctx context.Context) error {
	if _, err := b.cli.Delete(ctx, b.key); err != nil {
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
	resp, err := b.cli.Get(ctx, b.key)
	if err != nil {
		if transient(b.cli, err) && ctx.Err() == nil {
			return errResync
		}
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
