package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// wait blocks until the queue may have changed in a way that lets v's
// reader claim something, and returns a fresh view. The first call joins
// the waiting line and returns at once with a view read in the same
// transaction, so that nothing enqueued in between is missed.
//
// Waiting consumers form a line, in the order they joined. Only the first
// watches the queue; a new item or a released claim wakes it alone. When it
// claims an item, the same transaction deletes its place, which wakes the
// next in line, who reads the queue and either claims or becomes the one
// that watches. So each new item costs a bounded number of wakeups however
// many consumers wait.
func (d *dequeue) wait(ctx context.Context, v *view) (*view, error) {
	switch {
	case d.w == nil:
		return d.join(ctx, v.rev)
	case d.w.pred != "":
		return d.waitPred(ctx, v)
	default:
		return d.waitHead(ctx, v)
	}
}

// lastWaiters reads the n waiters that joined last, before revision
// before if it is not 0.
func (q *Queue) lastWaiters(n, before int64) clientv3.Op {
	opts := []clientv3.OpOption{
		clientv3.WithRange(q.waitEnd), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(n),
	}
	if before > 0 {
		opts = append(opts, clientv3.WithMaxCreateRev(before-1))
	}
	return clientv3.OpGet(q.waiters, opts...)
}

// join puts our place at the end of the line, finds who is ahead and reads
// the queue, in one transaction. seen is the revision of the read that
// found nothing to claim.
func (d *dequeue) join(ctx context.Context, seen int64) (*view, error) {
	q := d.q
	key := fmt.Sprintf("%s%x-%08x", q.waiters, int64(q.s.Lease()), rand.Uint32())
	h := d.head()
	// The put comes first, so the last two waiters to join are us and the
	// one just ahead; unless an attempt whose answer was lost put our key
	// earlier, which the read of our key tells.
	ops := append([]clientv3.Op{
		clientv3.OpPut(key, "", clientv3.WithLease(q.s.Lease())),
		clientv3.OpGet(key),
		q.lastWaiters(2, 0),
	}, q.headOps(h)...)
	res, err := rpc.Commit(ctx, q.cli, q.s, rpc.Txn{If: []clientv3.Cmp{q.fenced(seen)}, Then: ops, Else: q.headOps(h)})
	if err != nil {
		d.abandon(ctx, clientv3.Compare(clientv3.CreateRevision(key), ">", 0), clientv3.OpDelete(key))
		return nil, q.rpcErr(ctx, "dequeue", err)
	}
	if !res.Succeeded {
		// Another call of this session abandoned a request since our read;
		// read again and retry.
		return d.viewAt(h, res.TxnResponse, 0), nil
	}
	rev := res.Header.Revision
	mine := res.Responses[1].GetResponseRange().Kvs[0].CreateRevision
	d.w = &waiter{key: key, rev: mine, seenRev: rev}
	if mine != rev {
		if err := d.findPred(ctx); err != nil {
			return nil, err
		}
		return d.viewAt(h, res.TxnResponse, 3), nil
	}
	for _, kv := range res.Responses[2].GetResponseRange().Kvs {
		if string(kv.Key) != key {
			d.w.pred, d.w.predRev = string(kv.Key), kv.CreateRevision
			break
		}
	}
	return d.viewAt(h, res.TxnResponse, 3), nil
}

// findPred reads who waits just ahead of us.
func (d *dequeue) findPred(ctx context.Context) error {
	w := d.w
	resp, err := rpc.Commit(ctx, d.q.cli, d.q.s, rpc.Txn{Then: []clientv3.Op{d.q.lastWaiters(1, w.rev)}})
	if err != nil {
		return d.q.rpcErr(ctx, "dequeue", err)
	}
	w.pred, w.seenRev = "", resp.Header.Revision
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		w.pred, w.predRev = string(kvs[0].Key), kvs[0].CreateRevision
	}
	return nil
}

// waitPred waits until the waiter ahead of us leaves the line (it claimed
// an item, gave up or its session ended), then finds who is ahead now and
// reads the queue.
func (d *dequeue) waitPred(ctx context.Context, v *view) (*view, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan error, 1)
	go func() {
		gone <- waitfor.Gone(wctx, d.q.cli, d.w.pred, d.w.predRev, d.w.seenRev+1)
	}()
	select {
	case err := <-gone:
		if err != nil {
			return nil, ctxOr(ctx, err)
		}
	case <-v.freed:
		cancel()
		<-gone
	case <-d.q.s.Done():
		cancel()
		<-gone
		return nil, fmt.Errorf("queue: %w", d.q.s.Err())
	}
	h := d.head()
	ops := append([]clientv3.Op{d.q.lastWaiters(1, d.w.rev)}, d.q.headOps(h)...)
	res, err := rpc.Commit(ctx, d.q.cli, d.q.s, rpc.Txn{Then: ops})
	if err != nil {
		return nil, d.q.rpcErr(ctx, "dequeue", err)
	}
	d.w.pred, d.w.seenRev = "", res.Header.Revision
	if kvs := res.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		d.w.pred, d.w.predRev = string(kvs[0].Key), kvs[0].CreateRevision
	}
	return d.viewAt(h, res.TxnResponse, 1), nil
}

// waitHead watches claims and items from just after v until an item may
// be claimable: a new item, or a claim deleted without its item (a Nack,
// or a consumer's lease gone). Claims and acks of others do not wake it.
// The watch starts at v's revision + 1 so that etcd registers it as
// current and delivers events at once.
func (d *dequeue) waitHead(ctx context.Context, v *view) (*view, error) {
	w := d.w
	if w.watch == nil {
		w.watch, w.stopWatch = rpc.Watch(ctx, d.q.cli, d.q.s, d.q.claims, clientv3.WithRange(d.q.itemsEnd), clientv3.WithRev(v.rev+1))
	}
	w.watchedUpTo = max(w.watchedUpTo, v.rev)
	for {
		select {
		case resp, ok := <-w.watch:
			if !ok || resp.Canceled || resp.CompactRevision != 0 || resp.Err() != nil {
				// The watch broke or fell behind compaction: start again
				// from a fresh read.
				d.stopWatch()
				if !retry.Pause(ctx, retry.Delay(w.breaks), d.q.s.Done()) {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					return nil, fmt.Errorf("queue: %w", d.q.s.Err())
				}
				w.breaks++
				return d.read(ctx)
			}
			w.breaks = 0
			if d.wakes(resp.Events) {
				return d.read(ctx)
			}
		case <-v.freed:
			return d.read(ctx)
		case <-d.q.s.Done():
			return nil, fmt.Errorf("queue: %w", d.q.s.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// wakes reports whether events may have made an item claimable.
func (d *dequeue) wakes(events []*clientv3.Event) bool {
	q := d.q
	// An ack deletes the item and its claim in one revision; that frees
	// nothing.
	type at struct {
		id  string
		rev int64
	}
	acked := map[at]bool{}
	for _, ev := range events {
		if ev.Type == mvccpb.DELETE && strings.HasPrefix(string(ev.Kv.Key), q.items) {
			acked[at{strings.TrimPrefix(string(ev.Kv.Key), q.items), ev.Kv.ModRevision}] = true
		}
	}
	wake := false
	for _, ev := range events {
		rev, key := ev.Kv.ModRevision, string(ev.Kv.Key)
		if rev <= d.w.watchedUpTo {
			continue
		}
		switch {
		case ev.Type == mvccpb.PUT && strings.HasPrefix(key, q.items) && ev.Kv.Version == 1:
			wake = true // a new item
		case ev.Type == mvccpb.DELETE && strings.HasPrefix(key, q.claims) &&
			!acked[at{strings.TrimPrefix(key, q.claims), rev}]:
			wake = true // a claim released
		}
	}
	return wake
}

// stopWaiting forgets our place in line after a claim deleted it.
func (d *dequeue) stopWaiting() {
	d.stopWatch()
	d.w = nil
}

func (d *dequeue) stopWatch() {
	if d.w != nil && d.w.stopWatch != nil {
		d.w.stopWatch()
		d.w.watch, d.w.stopWatch = nil, nil
	}
}

// leave gives up our place in line, if we still have one, under its own
// bounded context (ctx may have ended), or through the session.
func (d *dequeue) leave(ctx context.Context) {
	if d.w == nil {
		return
	}
	d.stopWatch()
	rpc.Sweep(ctx, d.q.cli, d.q.s, rpc.Cleanup{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(d.w.key), "=", d.w.rev)},
		Then: []clientv3.Op{clientv3.OpDelete(d.w.key)},
	})
	d.w = nil
}

// ctxOr returns ctx's error if it ended, else err.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
