package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// cleanupTimeout bounds the deletes that run after the caller's context
// ended: a claim whose outcome is unknown, a place in the waiting line.
const cleanupTimeout = 5 * time.Second

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
// If ctx ends first, Dequeue returns ctx's error and leaves no claim behind.
// If the session ends, it returns an error wrapping the session's Err.
// Transient etcd errors (no leader, timeouts) are retried with backoff; the
// session bounds how long that can last.
func (q *Queue) Dequeue(ctx context.Context) (*Item, error) {
	if err := q.s.Err(); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	d := &dequeue{q: q, loc: acquireLocal(q.prefix), window: q.window.Load()}
	defer d.close(ctx)
	v, err := d.read(ctx)
	for attempt := 0; ; {
		if err != nil {
			if !transient(err) {
				return nil, err
			}
			if err := retry.Sleep(ctx, attempt); err != nil {
				return nil, err
			}
			attempt++
			v, err = d.read(ctx)
			continue
		}
		attempt = 0
		var it *Item
		if it, v, err = d.claimFrom(ctx, v); it != nil || err != nil {
			if it != nil {
				return it, nil
			}
			continue
		}
		if v.more {
			d.window *= 4
			v, err = d.read(ctx)
			continue
		}
		v, err = d.wait(ctx, v)
	}
}

// dequeue is the state of one Dequeue call.
type dequeue struct {
	q      *Queue
	loc    *local
	window int64
	losses int     // races lost to other processes
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
}

// read takes a fresh view of the head of the queue.
func (d *dequeue) read(ctx context.Context) (*view, error) {
	freed := d.loc.freedCh()
	resp, err := d.q.cli.Txn(ctx).Then(d.q.viewOps(d.window)...).Commit()
	if err != nil {
		return nil, d.q.rpcErr(ctx, "dequeue", err)
	}
	return d.viewAt(resp, 0, freed), nil
}

// viewAt parses the two responses of viewOps starting at index i.
func (d *dequeue) viewAt(resp *clientv3.TxnResponse, i int, freed <-chan struct{}) *view {
	return d.q.parseView(resp.Header.Revision,
		resp.Responses[i].GetResponseRange(), resp.Responses[i+1].GetResponseRange(), freed)
}

// claimFrom claims the best item of v, moving on to the next after each
// lost race with the fresh view the failed claim returned. It returns the
// item, or the latest view if nothing in it can be claimed.
func (d *dequeue) claimFrom(ctx context.Context, v *view) (*Item, *view, error) {
	for {
		if err := d.q.s.Err(); err != nil {
			return nil, nil, fmt.Errorf("queue: %w", err)
		}
		e, passed, ok := choose(v, d.loc, min(1+d.losses, maxSpread))
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
			it, nv, err = d.claim(ctx, e)
		}
		if it != nil {
			d.q.learnWindow(passed)
			return it, nil, nil // the mark stays until the Item ends
		}
		d.loc.unmark(e.key, err != nil)
		if err != nil {
			return nil, nil, err
		}
		if lostToOther(nv, e, d.loc) {
			d.losses++
		}
		v = nv
	}
}

// lostToOther reports whether e is now claimed by a consumer of another
// process: the sign that consumers elsewhere pick from the same head.
func lostToOther(v *view, e entry, loc *local) bool {
	for _, it := range v.items {
		if it.key == e.key {
			return it.claimed && !loc.isBusy(it.key)
		}
	}
	return false
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
// fresh view instead.
func (d *dequeue) claim(ctx context.Context, e entry) (*Item, *view, error) {
	q := d.q
	claimKey := q.claims + e.id
	// The nonce tells our claim from anybody else's if we must remove it
	// without knowing whether the claim took effect.
	nonce := fmt.Sprintf("%x-%08x", int64(q.s.Lease()), rand.Uint32())
	then := []clientv3.Op{
		clientv3.OpPut(e.key, "", clientv3.WithIgnoreValue()),
		clientv3.OpPut(claimKey, nonce, clientv3.WithLease(q.s.Lease())),
		clientv3.OpGet(e.key),
	}
	if d.w != nil {
		then = append(then, clientv3.OpDelete(d.w.key))
	}
	freed := d.loc.freedCh()
	resp, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev),
			clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0)).
		Then(then...).
		Else(q.viewOps(d.window)...).
		Commit()
	if err != nil {
		d.abandon(ctx, claimKey, nonce)
		return nil, nil, q.rpcErr(ctx, "dequeue", err)
	}
	if !resp.Succeeded {
		return nil, d.viewAt(resp, 0, freed), nil
	}
	d.stopWaiting() // the claim removed our place in line
	kvs := resp.Responses[2].GetResponseRange().Kvs
	rev := resp.Header.Revision
	it := &Item{
		q:        q,
		loc:      d.loc,
		id:       e.id,
		key:      e.key,
		value:    string(kvs[0].Value),
		priority: priorityOf(e.id),
		attempts: int(kvs[0].Version - 1),
	}
	d.loc.retain()
	it.Handle = own.New(q.s, claimKey, rev, rev+1, it.ended)
	return it, nil, nil
}

// abandon removes a claim whose outcome we do not know (the call failed or
// ctx ended while it was in flight), if it is ours, and leaves the waiting
// line, which that claim may have left already.
func (d *dequeue) abandon(ctx context.Context, claimKey, nonce string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	d.q.cli.Txn(cctx).
		If(clientv3.Compare(clientv3.Value(claimKey), "=", nonce)).
		Then(clientv3.OpDelete(claimKey)).
		Commit()
	d.leave(cctx)
}

// deadLetter moves e, delivered maxAttempts times without an Ack, to the
// dead-letter queue, guarded like a claim, and returns a fresh view either
// way. The move must carry the value, so it reads it first.
func (d *dequeue) deadLetter(ctx context.Context, e entry) (*view, error) {
	q := d.q
	got, err := q.cli.Get(ctx, e.key)
	if err != nil {
		return nil, q.rpcErr(ctx, "dead-letter", err)
	}
	if len(got.Kvs) == 0 || got.Kvs[0].ModRevision != e.modRev {
		return d.read(ctx)
	}
	freed := d.loc.freedCh()
	resp, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev),
			clientv3.Compare(clientv3.CreateRevision(q.claims+e.id), "=", 0)).
		Then(append([]clientv3.Op{
			clientv3.OpDelete(e.key),
			clientv3.OpPut(q.dead.items+e.id, string(got.Kvs[0].Value)),
		}, q.viewOps(d.window)...)...).
		Else(q.viewOps(d.window)...).
		Commit()
	if err != nil {
		return nil, q.rpcErr(ctx, "dead-letter", err)
	}
	if resp.Succeeded {
		return d.viewAt(resp, 2, freed), nil
	}
	return d.viewAt(resp, 0, freed), nil
}

// close ends the call: it stops the watch and gives up the place in the
// waiting line under its own short timeout, since ctx may have ended.
func (d *dequeue) close(ctx context.Context) {
	if d.w != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		d.leave(cctx)
		cancel()
	}
	d.loc.release(d.q.prefix)
}

// transient reports whether a failed call is worth retrying: the cluster
// is electing a leader, overloaded or slow, or the connection broke.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, lockstep.ErrSessionLost) || errors.Is(err, lockstep.ErrSessionClosed) {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
