package semaphore

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// How waiting works (docs/semaphore.md has the argument in full).
//
// Only the first waiter (exactly limit keys ahead of it) watches the keys
// that hold permits: it watches the prefix for deletes, from just after the
// read that showed it the holders, and is promoted by the first delete of a
// key it saw ahead of it. Every other waiter watches only the waiter just
// ahead of it, for any change. A waiter that is promoted rewrites its own
// key (a "touch") before it returns, which wakes the one waiter behind it;
// that waiter reads the queue again and finds itself first in line.
//
// So a release wakes one waiter, and the promotion it causes wakes one
// more: two watch events, whatever the limit and however long the queue.
// No release is missed: a waiter's position can only reach the limit after
// the waiter ahead of it was promoted (and touched its key) or went away
// (deleting its key), and every watch starts at the revision after the
// read it acts on.

// wake says why a wait ended.
type wake int

const (
	changed  wake = iota // what we watch changed: read the queue again now
	broken               // the watch ended without news: read again after a pause
	promoted             // a key ahead of ours went while we were first in line
)

// wait blocks until the ticket holds a permit.
func (t *ticket) wait(ctx context.Context) (*Permit, error) {
	v := t.first
	waited := false
	for attempt := 0; ; {
		if err := t.m.agree(v.ahead); err != nil {
			return nil, err
		}
		var w wake
		var err error
		switch n := len(v.ahead); {
		case n < t.m.limit:
			return t.grant(ctx, waited, v.rev)
		case n == t.m.limit:
			w, err = t.waitFirst(ctx, v)
		default:
			w, err = t.waitBehind(ctx, v)
		}
		if err != nil {
			return nil, err
		}
		waited = true
		switch w {
		case promoted:
			// Every key ahead was seen (and agreed) and one of them went:
			// no need to read again.
			return t.grant(ctx, true, 0)
		case broken:
			if err := retry.Sleep(ctx, attempt); err != nil {
				return nil, err
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

// grant turns the ticket into a permit. A ticket that waited touches its
// key first, in a transaction guarded by its revision, to wake the waiter
// behind it; seen is then unused. A ticket that held from the start has
// nobody watching it and passes seen, the revision of the read that showed
// it holds.
func (t *ticket) grant(ctx context.Context, touch bool, seen int64) (*Permit, error) {
	if !touch {
		return t.m.newPermit(t.key, t.rev, seen+1), nil
	}
	resp, err := t.m.s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
		Then(clientv3.OpPut(t.key, t.m.value, clientv3.WithLease(t.m.s.Lease()))).
		Commit()
	if err != nil {
		return nil, ctxErr(ctx, t.m.writeErr(err))
	}
	if !resp.Succeeded {
		return nil, t.m.keyGone(ctx, t.key)
	}
	return t.m.newPermit(t.key, t.rev, resp.Header.Revision+1), nil
}

// waitFirst waits as the first in line: v.ahead are exactly the holders.
// Deletes of other keys (waiters behind us leaving) are ignored; puts are
// filtered out by the server.
func (t *ticket) waitFirst(ctx context.Context, v view) (wake, error) {
	ahead := make(map[string]bool, len(v.ahead))
	for _, kv := range v.ahead {
		ahead[string(kv.Key)] = true
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := t.m.s.Client().Watch(wctx, keys.Dir(t.m.prefix),
		clientv3.WithPrefix(), clientv3.WithRev(v.rev+1), clientv3.WithFilterPut())
	for {
		resp, err := t.next(ctx, wch)
		if err != nil || resp == nil {
			return broken, err
		}
		if resp.CompactRevision != 0 {
			return changed, nil
		}
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.DELETE {
				continue
			}
			switch k := string(ev.Kv.Key); {
			case k == t.key:
				return 0, t.m.keyGone(ctx, t.key)
			case ahead[k]:
				return promoted, nil
			}
		}
		if resp.Canceled {
			return broken, nil
		}
	}
}

// waitBehind waits behind another waiter: any change to its key (a touch
// when it is promoted, a delete when it leaves) may move us to the front.
func (t *ticket) waitBehind(ctx context.Context, v view) (wake, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := t.m.s.Client().Watch(wctx, string(v.ahead[0].Key), clientv3.WithRev(v.rev+1))
	for {
		resp, err := t.next(ctx, wch)
		if err != nil || resp == nil {
			return broken, err
		}
		if resp.CompactRevision != 0 || len(resp.Events) > 0 {
			return changed, nil
		}
		if resp.Canceled {
			return broken, nil
		}
	}
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
