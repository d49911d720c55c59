// Package line is the waiting line that etcd's Mutex and Election share,
// written once for lockstep's mutex and election: the keys under a
// directory, ordered by create revision; the oldest holds. A session
// stands in the line with one key, the directory and its lease in hex.
//
// A waiter watches only the key just ahead of it, so a release wakes one
// waiter. docs/mutex.md has the reasoning.
package line

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/ctxs"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Line is one session's place in the line of one name.
type Line struct {
	S   *lockstep.Session
	Dir string // the name's directory: prefix + "/"
	Key string // the session's key: Dir + lease in hex
}

// Place is where our key stands in the line, as of one read.
type Place struct {
	Rev       int64            // header revision of the read
	Pred      *mvccpb.KeyValue // the key created just before ours; nil: ours is the oldest
	PredHolds bool             // Pred is the oldest key: its deletion makes ours the oldest
}

// Followed is the last key a waiter waited for: the one whose deletion
// made it the holder.
type Followed struct {
	KV     *mvccpb.KeyValue // nil: the waiter never waited
	Held   bool             // KV was the oldest key at the waiter's last read
	SeenAt int64            // the revision of that read
	GoneAt int64            // the revision that deleted KV; 0 if the wait did not see it
}

// empty holds in a Txn when no key is in the line.
func (l Line) empty() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.Dir), "=", 0).WithPrefix()
}

// Enter puts the session's key with value and finds its place. An empty
// line needs no read: the compare proves that the new key is the oldest.
// Otherwise the put says whether our key existed, and the two newest keys
// are ours and our predecessor; the range's count says whether that
// predecessor is the oldest. One transaction either way. A key that
// existed already (a leftover of this session, or one an attempt whose
// answer was lost created) keeps its create revision, and so its place,
// which one more read finds. The handle it returns owns release (see
// own.New).
func (l Line) Enter(ctx context.Context, value string, release func()) (*own.Handle, Place, error) {
	put := clientv3.OpPut(l.Key, value, clientv3.WithLease(l.S.Lease()))
	putOrKeep := clientv3.OpPut(l.Key, value, clientv3.WithLease(l.S.Lease()), clientv3.WithPrevKV())
	newest := clientv3.OpGet(l.Dir, append(clientv3.WithLastCreate(), clientv3.WithLimit(2))...)
	res, err := rpc.Commit(ctx, l.S.Client(), l.S, rpc.Txn{
		If:   []clientv3.Cmp{l.empty()},
		Then: []clientv3.Op{put},
		Else: []clientv3.Op{putOrKeep, newest},
	})
	if err != nil {
		l.Forget(ctx, res.Retried, release)
		return nil, Place{}, err
	}
	rev := res.Header.Revision
	if res.Succeeded {
		return own.NewLazy(l.S, l.Key, rev, rev+1, release), Place{Rev: rev}, nil
	}
	if prev := res.Responses[0].GetResponsePut().PrevKv; prev != nil {
		h := own.NewLazy(l.S, l.Key, prev.CreateRevision, rev+1, release)
		at, err := l.Position(ctx, h)
		if err != nil {
			return nil, Place{}, h.Abandon(ctx, err)
		}
		return h, at, nil
	}
	at := Place{Rev: rev}
	if r := res.Responses[1].GetResponseRange(); len(r.Kvs) == 2 {
		at.Pred, at.PredHolds = r.Kvs[1], r.Count == 2
	}
	return own.NewLazy(l.S, l.Key, rev, rev+1, release), at, nil
}

// Forget removes our key after a put that failed; sent says that a
// request went out without an answer, so its put may have been applied or
// may still be. The key carries our lease, and while we hold the
// reservation no other goroutine of the session writes it, so whatever is
// there is ours; the session looks again once a put in flight cannot be
// any more. release runs when that is over.
func (l Line) Forget(ctx context.Context, sent bool, release func()) {
	if !sent {
		release()
		return
	}
	rpc.Sweep(ctx, l.S.Client(), l.S, rpc.Cleanup{
		If:      []clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(l.Key), "=", l.S.Lease())},
		Then:    []clientv3.Op{clientv3.OpDelete(l.Key)},
		Done:    release,
		Recheck: rpc.InFlight,
	})
}

// Position reads, in one round trip, whether our key is still there, who
// is the oldest and which key was created just before ours. Failures that
// may pass are retried, so a waiter keeps its place through a failover; it
// gives up when ctx, the place in the line (h) or the session ends, also in
// the middle of an attempt.
func (l Line) Position(ctx context.Context, h *own.Handle) (Place, error) {
	qctx, stop := ctxs.EndWith(ctx, h.Done(), nil)
	defer stop()
	var resp *clientv3.TxnResponse
	err := rpc.Do(qctx, l.S.Client(), l.S, func(ctx context.Context) error {
		var err error
		resp, err = l.S.Client().Txn(ctx).Then(
			clientv3.OpGet(l.Key),
			clientv3.OpGet(l.Dir, clientv3.WithFirstCreate()...),
			clientv3.OpGet(l.Dir, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(h.Token()-1))...),
		).Commit()
		return err
	})
	switch {
	case h.Err() != nil:
		return Place{}, h.Err()
	case err != nil:
		return Place{}, err
	}
	mine := resp.Responses[0].GetResponseRange().Kvs
	if len(mine) == 0 || mine[0].CreateRevision != h.Token() {
		// The handle's watch saw the delete too and finds out whether
		// our lease was revoked or someone deleted the key.
		return Place{}, lost(ctx, h)
	}
	at := Place{Rev: resp.Header.Revision}
	if preds := resp.Responses[2].GetResponseRange().Kvs; len(preds) > 0 {
		first := resp.Responses[1].GetResponseRange().Kvs
		at.Pred = preds[0]
		at.PredHolds = len(first) > 0 && first[0].CreateRevision == preds[0].CreateRevision
	}
	return at, nil
}

// Wait waits until our key is the oldest, from the place at, and returns
// the key it waited for last.
func (l Line) Wait(ctx context.Context, h *own.Handle, at Place) (Followed, error) {
	var f Followed
	for at.Pred != nil {
		f = Followed{KV: at.Pred, Held: at.PredHolds, SeenAt: at.Rev}
		var (
			gone int64
			err  error
		)
		if at, gone, err = l.waitPred(ctx, h, at); err != nil {
			return Followed{}, err
		}
		if gone != 0 {
			f.GoneAt = gone
		}
	}
	return f, nil
}

// lost waits for the handle to explain why our key is gone (a revoked
// lease, or someone else's delete).
func lost(ctx context.Context, h *own.Handle) error {
	select {
	case <-h.Done():
		return h.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}
