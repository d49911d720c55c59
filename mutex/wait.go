package mutex

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/own"
)

// waitPred waits until the key ahead of ours in at is gone and returns our
// new place; a place without a predecessor means we hold the mutex.
//
// It watches two keys on one watch stream: the predecessor, and our own
// key. Both watches start at the current revision, which etcd registers as
// current: events reach us as they commit, in revision order, instead of
// from the server's 100 ms catch-up loop that serves watches started in
// the past. If anything was written between the read that placed us and
// the watches' start, one more read covers that gap.
//
// When the predecessor was the owner, its delete makes us the owner with no
// further read: a key created later cannot be older than ours. If our own
// key went first (a revoked lease, a delete by someone else), that event
// arrived before the predecessor's on the same stream, so we do not mistake
// the predecessor's delete for our turn.
//
// The member that serves the watches may be behind the one that served the
// read: its current revision, where the watches start, is then older than
// the read, and the watches deliver what the read already reflected. Key
// names are reused (prefix/<lease>, each time a session locks again), so
// those can be deletes of earlier incarnations of the predecessor's key or
// of ours. Only deletes after the read count.
func (m *Mutex) waitPred(ctx context.Context, h *own.Handle, at place) (place, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cli := m.s.Client()
	pred := cli.Watch(wctx, string(at.pred.Key), clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	mine := cli.Watch(wctx, m.key, clientv3.WithCreatedNotify(), clientv3.WithFilterPut())

	var from int64 // both watches see every event after this revision
	for _, ch := range []clientv3.WatchChan{pred, mine} {
		select {
		case resp, ok := <-ch:
			if !ok || !resp.Created || resp.Err() != nil {
				return m.reread(ctx, h)
			}
			from = max(from, resp.Header.Revision)
		case <-h.Done():
			return place{}, m.ended(h)
		case <-ctx.Done():
			return place{}, ctx.Err()
		}
	}
	if from > at.rev {
		now, err := m.position(ctx, h)
		if err != nil || now.pred == nil || !sameKey(now.pred, at.pred) {
			return now, err
		}
		at = now // the predecessor may have become the owner meanwhile
	}

	for {
		select {
		case resp, ok := <-pred:
			switch {
			case deletedAfter(resp, at.rev):
				if mineDeleted(mine, at.rev) {
					return place{}, m.lost(ctx, h)
				}
				if at.predIsOwner {
					return place{rev: resp.Header.Revision}, nil
				}
				return m.position(ctx, h)
			case !ok || resp.Err() != nil:
				return m.reread(ctx, h)
			}
		case resp, ok := <-mine:
			switch {
			case deletedAfter(resp, at.rev):
				return place{}, m.lost(ctx, h)
			case !ok || resp.Err() != nil:
				return m.reread(ctx, h)
			}
		case <-h.Done():
			return place{}, m.ended(h)
		case <-ctx.Done():
			return place{}, ctx.Err()
		}
	}
}

// reread recovers from a watch that ended on its own (the client closing,
// the server cancelling it, a member going away): after a short pause, it
// reads our place again and the caller watches anew.
func (m *Mutex) reread(ctx context.Context, h *own.Handle) (place, error) {
	if err := pause(ctx, 0, h.Done(), func() error { return m.ended(h) }); err != nil {
		return place{}, err
	}
	return m.position(ctx, h)
}

// lost waits for the handle to explain why our key is gone (revoked lease
// or someone else's delete).
func (m *Mutex) lost(ctx context.Context, h *own.Handle) error {
	select {
	case <-h.Done():
		return m.ended(h)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ended is the error for a place in the queue that ended while waiting.
func (m *Mutex) ended(h *own.Handle) error {
	return fmt.Errorf("mutex: lock %s: %w", m.prefix, h.Err())
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
			if deletedAfter(resp, rev) {
				return true
			}
		default:
			return false
		}
	}
}

// deletedAfter reports whether resp has a delete after revision rev: one
// that the read at rev did not reflect.
func deletedAfter(resp clientv3.WatchResponse, rev int64) bool {
	for _, ev := range resp.Events {
		if ev.Type == mvccpb.DELETE && ev.Kv.ModRevision > rev {
			return true
		}
	}
	return false
}

func sameKey(a, b *mvccpb.KeyValue) bool {
	return string(a.Key) == string(b.Key) && a.CreateRevision == b.CreateRevision
}
