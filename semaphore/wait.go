package semaphore

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// How waiting works (docs/semaphore.md has the argument in full).
//
// Only the first waiter (exactly limit keys ahead of it) watches the keys
// that hold permits: it watches the prefix for deletes and is promoted by
// the first delete of a key it saw ahead of it. Every other waiter watches
// only the waiter just ahead of it, for any change. A waiter that is
// promoted rewrites its own key (a "touch") before it returns, which wakes
// the one waiter behind it; that waiter reads the queue again and finds
// itself first in line.
//
// So a release wakes one waiter, and the promotion it causes wakes one
// more: two watch events, whatever the limit and however long the queue.
// No release is missed: a waiter's position can only reach the limit after
// the waiter ahead of it was promoted (and touched its key) or went away
// (deleting its key), and every decision rests on a read that the watch
// covers (see watch).

// wake says why a wait ended.
type wake int

const (
	changed  wake = iota // what we watch changed: read the queue again now
	broken               // the watch ended: read again after a pause, with a new watch
	promoted             // a key ahead of ours went while we were first in line
)

// watch is one open watch, kept across reads while its target stays the
// same.
//
// It starts at the server's current revision rather than just after our
// read: etcd serves a watch whose start revision is already in the past
// (any write landed between our read and the watch) only from its 100ms
// catch-up loop, which under contention would add up to 100ms to every
// handoff. Instead the watch reports the revision it started at (its
// created notice); if that is past our read, something may have changed
// in between and we read again, keeping the watch, which covers everything
// after its start.
type watch struct {
	target string // a waiter's key, or the prefix's directory
	ch     clientv3.WatchChan
	cancel context.CancelFunc
	start  int64 // revision the server had when it created the watch; 0 until known
}

func (t *ticket) watch(ctx context.Context, target string, first bool) *watch {
	opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
	if first {
		opts = append(opts, clientv3.WithPrefix(), clientv3.WithFilterPut())
	}
	ch, cancel := rpc.Watch(ctx, t.m.s.Client(), t.m.s, target, opts...)
	return &watch{target: target, ch: ch, cancel: cancel}
}

func (w *watch) stop() {
	if w != nil {
		w.cancel()
	}
}

// wait blocks until the ticket holds a permit.
func (t *ticket) wait(ctx context.Context) (*Permit, error) {
	// Only a ticket that queued behind others can have a waiter watching
	// it; only such a ticket touches its key when promoted.
	touch := len(t.first.ahead) >= t.m.limit
	v := t.first
	var w *watch
	defer func() { w.stop() }()
	for attempt := 0; ; {
		if err := t.m.agree(v.ahead); err != nil {
			return nil, err
		}
		n := len(v.ahead)
		if n < t.m.limit {
			return t.grant(ctx, touch, v.rev)
		}
		first := n == t.m.limit
		target := string(v.ahead[0].Key)
		if first {
			target = keys.Dir(t.m.prefix)
		}
		if w == nil || w.target != target {
			w.stop()
			w = t.watch(ctx, target, first)
		}
		why, err := t.waitOn(ctx, w, v, first)
		if err != nil {
			return nil, err
		}
		switch why {
		case promoted:
			// Every key ahead was read (and agreed) and one of them went:
			// no need to read again.
			return t.grant(ctx, true, 0)
		case broken:
			w.stop()
			w = nil
			if !retry.Pause(ctx, retry.Delay(attempt), t.m.s.Done()) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, t.m.sessionErr()
			}
			attempt++
		default:
			attempt = 0
		}
		if v, err = t.read(ctx); err != nil {
			return nil, err
		}
	}
}

// waitOn waits on w for a change that matters after the read v. First in
// line, that is the delete of a key ahead of ours (puts are filtered out by
// the server; deletes of waiters behind us are ignored); behind another
// waiter, any change to its key.
func (t *ticket) waitOn(ctx context.Context, w *watch, v view, first bool) (wake, error) {
	var ahead map[string]bool
	if first {
		ahead = make(map[string]bool, len(v.ahead))
		for _, kv := range v.ahead {
			ahead[string(kv.Key)] = true
		}
	}
	for {
		resp, err := t.next(ctx, w.ch)
		if err != nil || resp == nil {
			return broken, err
		}
		if resp.Canceled || resp.CompactRevision != 0 {
			return broken, nil
		}
		if resp.Created {
			w.start = resp.Header.Revision
			if w.start > v.rev {
				return changed, nil // the watch may have missed something after v
			}
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= v.rev {
				continue // already in v
			}
			if !first {
				return changed, nil
			}
			if ev.Type != mvccpb.DELETE {
				continue
			}
			switch k := string(ev.Kv.Key); {
			case k == t.key:
				return 0, t.m.keyGone(t.key)
			case ahead[k]:
				return promoted, nil
			}
		}
	}
}

// grant turns the ticket into a permit. A ticket that queued behind others
// touches its key first, in a transaction guarded by its revision, to wake
// the waiter behind it; seen is then unused. A ticket that held from the
// start passes seen, the revision of the read that showed it holds. The
// guarded touch can be applied twice, so failures that may pass are
// retried.
func (t *ticket) grant(ctx context.Context, touch bool, seen int64) (*Permit, error) {
	if !touch {
		return t.m.newPermit(t.key, t.rev, seen+1), nil
	}
	res, err := rpc.Commit(ctx, t.m.s.Client(), t.m.s, rpc.Txn{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)},
		Then: []clientv3.Op{clientv3.OpPut(t.key, t.m.value, clientv3.WithLease(t.m.s.Lease()))},
	})
	switch {
	case err != nil:
		return nil, ctxErr(ctx, t.m.writeErr(err))
	case !res.Succeeded:
		return nil, t.m.keyGone(t.key)
	}
	return t.m.newPermit(t.key, t.rev, res.Header.Revision+1), nil
}

// next returns the next watch response, nil if the watch ended, or an
// error if ctx, the session or the client ended.
func (t *ticket) next(ctx context.Context, wch clientv3.WatchChan) (*clientv3.WatchResponse, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.m.s.Done():
		return nil, t.m.sessionErr()
	case resp, ok := <-wch:
		if ok {
			return &resp, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := t.m.s.Client().Ctx().Err(); err != nil {
			return nil, fmt.Errorf("semaphore: client closed: %w", err)
		}
		return nil, nil
	}
}
