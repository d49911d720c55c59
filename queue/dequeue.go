package queue

import (
	"context"
	"fmt"
	"math/rand/v2"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Dequeue blocks until it claims an item, ctx ends or the session ends. The
// item is the first unclaimed one in priority order, then arrival order;
// nobody else receives it while the claim lives. Finish with it by calling
// Ack (done, removed for good) or Nack (give it back now); if the session
// ends first, the item is delivered again.
//
// With work available it costs two round trips: a read of the head of the
// queue and the claim. An empty queue costs one more write to join the
// line of waiting consumers; only the first in line watches for new items,
// so a new item wakes one consumer, not all of them.
//
// If ctx ends first, Dequeue returns ctx's error and leaves no claim behind
// (the session removes what it could not remove at once). If the session
// ends, it returns an error wrapping the session's Err, also while a
// request is in flight. Errors that may pass (no leader, timeouts) are
// retried with backoff.
func (q *Queue) Dequeue(ctx context.Context) (*Item, error) {
	if err := q.s.Err(); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	d := &dequeue{q: q, loc: acquireLocal(q.localKey), window: q.window.Load(), spread: int(q.spread.Load())}
	defer d.close(ctx)
	v, err := d.read(ctx)
	for err == nil {
		var it *Item
		if it, v, err = d.claimFrom(ctx, v); it != nil || err != nil {
			return it, err
		}
		switch {
		case v.more: // everything read is taken: read further
			d.window *= 4
			v, err = d.read(ctx)
		case v.bound != "": // everything before the bound is taken
			d.loc.clearBound(v.bound)
			v, err = d.read(ctx)
		default:
			v, err = d.wait(ctx, v)
		}
	}
	return nil, err
}

// dequeue is the state of one Dequeue call.
type dequeue struct {
	q      *Queue
	loc    *local
	window int64
	spread int     // how many items to choose among; see choose
	lost   bool    // a race was lost to another process during this call
	w      *waiter // our place in the waiting line; nil if none
}

// waiter is a place in the line of waiting consumers: a key under the
// session's lease. The first in line (no key created before it) watches
// the queue; every other one watches only the key just ahead of it.
type waiter struct {
	key     string
	rev     int64
	pred    string // key just ahead; "" at the head
	predRev int64  // its create revision
	seenRev int64  // the revision at which pred was last seen

	watch       clientv3.WatchChan // the head's watch of claims and items
	stopWatch   context.CancelFunc
	watchedUpTo int64 // events at or below this revision are in a view already
	breaks      int   // watches broken in a row, for backoff
}

// read takes a fresh view of the head of the queue.
func (d *dequeue) read(ctx context.Context) (*view, error) {
	h := d.head()
	res, err := rpc.Commit(ctx, d.q.cli, d.q.s, rpc.Txn{Then: d.q.headOps(h)})
	if err != nil {
		return nil, d.q.rpcErr(ctx, "dequeue", err)
	}
	return d.viewAt(h, res.TxnResponse, 0), nil
}

// head prepares a read of the head of the queue (see head).
func (d *dequeue) head() head {
	h := head{window: d.window, bound: d.loc.getBound(), freed: d.loc.freedCh()}
	if h.bound == "" {
		h.window = max(h.window, boundSpan)
	}
	return h
}

// viewAt parses the two responses of headOps(h) starting at index i. An
// unbounded read that could not return everything sets the bound.
func (d *dequeue) viewAt(h head, resp *clientv3.TxnResponse, i int) *view {
	v := d.q.parseView(h, resp.Header.Revision,
		resp.Responses[i].GetResponseRange(), resp.Responses[i+1].GetResponseRange())
	if h.bound == "" && v.more && len(v.items) > 0 {
		d.loc.setBound(v.items[len(v.items)-1].id)
	}
	return v
}

// claimFrom claims the best item of v, moving on to the next after each
// lost race with the fresh view the failed claim returned. It returns the
// item, or the latest view if nothing in it can be claimed.
func (d *dequeue) claimFrom(ctx context.Context, v *view) (*Item, *view, error) {
	for {
		if err := d.q.s.Err(); err != nil {
			return nil, nil, fmt.Errorf("queue: %w", err)
		}
		e, passed, ok := choose(v, d.loc, d.spread)
		if !ok {
			return nil, v, nil
		}
		if !d.loc.mark(e.key) {
			continue // another Dequeue of this process took it since; choose skips it now
		}
		var (
			it  *Item
			nv  *view
			err error
		)
		if d.q.dead != nil && int(e.version-1) >= d.q.maxAttempts {
			nv, err = d.deadLetter(ctx, e)
		} else {
			it, nv, err = d.claim(ctx, e, v.rev)
		}
		if it != nil {
			d.q.learnWindow(passed)
			d.q.learnSpread(d.spread, d.lost)
			return it, nil, nil // the mark stays until the Item ends
		}
		// Unless somebody else claimed it, the item is as free as before
		// (our claim failed, or was refused because this session's fence
		// moved): Dequeues of this process that skipped it as busy look
		// again, since no etcd event will tell them.
		d.loc.unmark(e.key, err != nil || !claimedIn(nv, e))
		if err != nil {
			return nil, nil, err
		}
		if lostToOther(nv, e, d.loc) {
			d.lost = true
			d.spread = min(2*d.spread, maxSpread)
		}
		v = nv
	}
}

// claimedIn reports whether v shows e claimed.
func claimedIn(v *view, e entry) bool {
	for _, it := range v.items {
		if it.key == e.key {
			return it.claimed
		}
	}
	return false
}

// lostToOther reports whether e is now claimed by a consumer of another
// process: the sign that consumers elsewhere pick from the same head.
func lostToOther(v *view, e entry, loc *local) bool {
	for _, it := range v.items {
		if it.key == e.key {
			return it.claimed && !loc.isLocal(it.claimer)
		}
	}
	return false
}

// learnSpread carries the spread over to the next Dequeue: consumers that
// keep meeting each other keep spreading, and a Dequeue that met nobody
// narrows it again, back to strict order once the others are gone.
func (q *Queue) learnSpread(spread int, lost bool) {
	if !lost {
		spread = max(1, spread-1)
	}
	q.spread.Store(int64(spread))
}

// learnWindow remembers how far past the head the last claim had to look,
// so that the next Dequeue reads enough in one go.
func (q *Queue) learnWindow(passed int) {
	q.window.Store(max(minWindow, int64(2*passed+minWindow/2)))
}

// claim takes e in one transaction: if e is unchanged since the view and
// unclaimed, count a delivery on the item (a put that keeps its value, so
// its version is 1 + deliveries), create the claim under our lease, read
// the value, and give up our place in the waiting line. Otherwise return a
// fresh view instead, with the claim key and the item: a claim holding our
// nonce there was made by an attempt whose answer was lost.
func (d *dequeue) claim(ctx context.Context, e entry, seen int64) (*Item, *view, error) {
	q := d.q
	claimKey := q.claims + e.id
	nonce := fmt.Sprintf("%x-%08x", int64(q.s.Lease()), rand.Uint32())
	ours := clientv3.Compare(clientv3.Value(claimKey), "=", nonce)
	then := []clientv3.Op{
		clientv3.OpPut(e.key, "", clientv3.WithIgnoreValue()),
		clientv3.OpPut(claimKey, nonce, clientv3.WithLease(q.s.Lease())),
		clientv3.OpGet(e.key),
	}
	if d.w != nil {
		then = append(then, clientv3.OpDelete(d.w.key))
	}
	h := d.head()
	res, err := rpc.Commit(ctx, q.cli, q.s, rpc.Txn{
		If: []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev),
			clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0),
			d.q.fenced(seen)},
		Then: then,
		Else: append(q.headOps(h), clientv3.OpGet(claimKey), clientv3.OpGet(e.key)),
	})
	if err != nil {
		d.abandon(ctx, ours, clientv3.OpDelete(claimKey))
		return nil, nil, q.rpcErr(ctx, "dequeue", err)
	}
	item, claimKV := res.Responses[2], (*clientv3.GetResponse)(nil)
	if !res.Succeeded {
		c, it := res.Responses[2].GetResponseRange(), res.Responses[3]
		if len(c.Kvs) == 0 || string(c.Kvs[0].Value) != nonce || len(it.GetResponseRange().Kvs) == 0 {
			return nil, d.viewAt(h, res.TxnResponse, 0), nil
		}
		item, claimKV = it, (*clientv3.GetResponse)(c)
	}
	d.stopWaiting() // the claim removed our place in line
	d.loc.claimedBy(int64(q.s.Lease()))
	kvs := item.GetResponseRange().Kvs
	rev := res.Header.Revision
	token := rev
	if claimKV != nil {
		token = claimKV.Kvs[0].CreateRevision
	}
	it := &Item{
		q:         q,
		loc:       d.loc,
		id:        e.id,
		key:       e.key,
		value:     string(kvs[0].Value),
		priority:  priorityOf(e.id),
		attempts:  int(kvs[0].Version - 1),
		claimedAt: rev + 1,
	}
	d.loc.retain()
	it.h = own.New(q.s, claimKey, token, rev+1, it.ended)
	it.Ownership = it.h
	return it, nil, nil
}

// abandon undoes a claim or a place in line whose request failed or whose
// ctx ended while it was in flight. Such a request may still be applied
// later: etcd does not withdraw a proposal when its caller gives up. So if
// the key is ours now (ours holds) it is deleted, and if not, the session's
// fence is moved past the request, whose guard then fails if it ever
// arrives. Either way no claim or place is left behind: what cannot be
// done now, the session goes on doing.
func (d *dequeue) abandon(ctx context.Context, ours clientv3.Cmp, undo clientv3.Op) {
	q := d.q
	rpc.Sweep(ctx, q.cli, q.s, rpc.Cleanup{
		If:   []clientv3.Cmp{ours},
		Then: []clientv3.Op{undo},
		Else: []clientv3.Op{clientv3.OpPut(q.fenceKey(), "", clientv3.WithLease(q.s.Lease()))},
	})
	d.leave(ctx)
}

// fenceKey is the session's fence: a key that every claim and every place
// in line of this session is guarded by, written only by abandon.
func (q *Queue) fenceKey() string {
	return fmt.Sprintf("%s%x", q.sessions, int64(q.s.Lease()))
}

// fenced holds while the fence has not moved since revision seen, the
// revision of the read the request was decided on.
func (q *Queue) fenced(seen int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(q.fenceKey()), "<", seen+1)
}

// deadLetter moves e, delivered maxAttempts times without an Ack, to the
// dead-letter queue, guarded like a claim, and returns a fresh view either
// way. The move must carry the value, so it reads it first. Applying the
// move twice is harmless: the second finds the item gone.
func (d *dequeue) deadLetter(ctx context.Context, e entry) (*view, error) {
	q := d.q
	got, err := rpc.Get(ctx, q.cli, q.s, e.key)
	if err != nil {
		return nil, q.rpcErr(ctx, "dead-letter", err)
	}
	if len(got.Kvs) == 0 || got.Kvs[0].ModRevision != e.modRev {
		return d.read(ctx)
	}
	h := d.head()
	res, err := rpc.Commit(ctx, q.cli, q.s, rpc.Txn{
		If: []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev),
			clientv3.Compare(clientv3.CreateRevision(q.claims+e.id), "=", 0)},
		Then: append([]clientv3.Op{
			clientv3.OpDelete(e.key),
			clientv3.OpPut(q.dead.items+e.id, string(got.Kvs[0].Value)),
		}, q.headOps(h)...),
		Else: q.headOps(h),
	})
	if err != nil {
		return nil, q.rpcErr(ctx, "dead-letter", err)
	}
	if res.Succeeded {
		return d.viewAt(h, res.TxnResponse, 2), nil
	}
	return d.viewAt(h, res.TxnResponse, 0), nil
}

// close ends the call: it stops the watch and gives up the place in the
// waiting line (see leave).
func (d *dequeue) close(ctx context.Context) {
	d.leave(ctx)
	d.loc.release(d.q.localKey)
}
