package line

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// waitPred waits until the key ahead of ours in at is gone and returns our
// new place (no predecessor: ours is the oldest) and the revision of the
// predecessor's delete if it was seen.
//
// It watches two keys on one watch stream: the predecessor, and our own
// key. Both watches start at the server's current revision, which etcd
// registers as current: events reach us as they commit, in revision order,
// instead of from the server's 100 ms catch-up loop that serves watches
// started in the past. If anything was written between the read that
// placed us and the watches' start, one more read covers that gap.
//
// When the predecessor was the oldest, its delete makes ours the oldest
// with no further read: a key created later cannot be older than ours.
// Before taking its turn the waiter looks whether a delete of its own key
// is already waiting on the other watch. The two watches share one stream,
// but clientv3 hands each its own channel, so a delete of our key at an
// earlier revision (a revoked lease) can still arrive after the
// predecessor's: then the turn is taken by a key that is gone, the handle
// ends at once (its own watch sees the delete) and IsOwner never holds.
// The package documentations of mutex and election state that exception.
//
// The member that serves the watches may be behind the one that served the
// read: its current revision, where the watches start, is then older than
// the read, and the watches deliver what the read already reflected. Key
// names are reused (each time a session enters again), so those can be
// deletes of earlier incarnations of the predecessor's key or of ours.
// Only deletes after the read count.
func (l Line) waitPred(ctx context.Context, h *own.Handle, at Place) (Place, int64, error) {
	// Both watches share one stream: they are ended together, with the
	// session too (see rpc.Watch).
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cli := l.S.Client()
	pred, stopPred := rpc.Watch(wctx, cli, l.S, string(at.Pred.Key), clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	defer stopPred()
	mine, stopMine := rpc.Watch(wctx, cli, l.S, l.Key, clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	defer stopMine()

	var from int64 // both watches see every event after this revision
	for _, ch := range []clientv3.WatchChan{pred, mine} {
		select {
		case resp, ok := <-ch:
			if !ok || !resp.Created || resp.Err() != nil {
				return l.reread(ctx, h)
			}
			from = max(from, resp.Header.Revision)
		case <-h.Done():
			return Place{}, 0, h.Err()
		case <-ctx.Done():
			return Place{}, 0, ctx.Err()
		}
	}
	if from > at.Rev {
		now, err := l.Position(ctx, h)
		if err != nil || now.Pred == nil || !sameKey(now.Pred, at.Pred) {
			return now, 0, err
		}
		at = now // the predecessor may have become the oldest meanwhile
	}

	for {
		select {
		case resp, ok := <-pred:
			if gone := deletedAfter(resp, at.Rev); gone != 0 {
				if mineDeleted(mine, at.Rev) {
					return Place{}, 0, lost(ctx, h)
				}
				if at.PredHolds {
					return Place{Rev: gone}, gone, nil
				}
				now, err := l.Position(ctx, h)
				return now, gone, err
			}
			if !ok || resp.Err() != nil {
				return l.reread(ctx, h)
			}
		case resp, ok := <-mine:
			if deletedAfter(resp, at.Rev) != 0 {
				return Place{}, 0, lost(ctx, h)
			}
			if !ok || resp.Err() != nil {
				return l.reread(ctx, h)
			}
		case <-h.Done():
			return Place{}, 0, h.Err()
		case <-ctx.Done():
			return Place{}, 0, ctx.Err()
		}
	}
}

// reread recovers from a watch that ended on its own (the client closing,
// the server cancelling it, a member going away): after a short pause, it
// reads our place again and the caller watches anew.
func (l Line) reread(ctx context.Context, h *own.Handle) (Place, int64, error) {
	if !retry.Pause(ctx, retry.Delay(0), h.Done()) {
		if err := h.Err(); err != nil {
			return Place{}, 0, err
		}
		return Place{}, 0, ctx.Err()
	}
	at, err := l.Position(ctx, h)
	return at, 0, err
}

// mineDeleted reports whether a delete of our key after revision rev is
// already waiting on mine, without blocking.
func mineDeleted(mine clientv3.WatchChan, rev int64) bool {
	for {
		select {
		case resp, ok := <-mine:
			if !ok {
				return false
			}
			if deletedAfter(resp, rev) != 0 {
				return true
			}
		default:
			return false
		}
	}
}

// deletedAfter returns the revision of a delete in resp after revision
// rev (one that the read at rev did not reflect), or 0.
func deletedAfter(resp clientv3.WatchResponse, rev int64) int64 {
	for _, ev := range resp.Events {
		if ev.Type == mvccpb.DELETE && ev.Kv.ModRevision > rev {
			return ev.Kv.ModRevision
		}
	}
	return 0
}

func sameKey(a, b *mvccpb.KeyValue) bool {
	return string(a.Key) == string(b.Key) && a.CreateRevision == b.CreateRevision
}
