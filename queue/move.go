package queue

import (
	"context"
	"fmt"
	"math"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Move takes the item id out of this queue and enqueues it at the end of
// its priority in the queue to, in one transaction, and returns its new
// ID there. It is how a dead letter goes back to work: Move it from the
// dead-letter queue to the queue it came from. Its value and priority
// stay; its attempt count starts again from zero. Both queues must be on
// the same etcd cluster; the transaction goes through to's client.
//
// It returns ErrInvalidID or ErrInvalidOption (to is nil, or this queue)
// before any I/O; ErrNotFound if the item is not here; ErrClaimed if a
// consumer holds it; ErrTooLarge if to's request limit cannot carry it. An
// attempt whose answer was lost is found in etcd's history, as Enqueue's.
// It costs two round trips: a read of the item, then the transaction.
func (p *Producer) Move(ctx context.Context, id string, to *Producer) (string, error) {
	switch {
	case !validID(id):
		return "", fmt.Errorf("%w: %q", ErrInvalidID, id)
	case to == nil || to.prefix == p.prefix:
		return "", fmt.Errorf("%w: move needs another queue to move to", ErrInvalidOption)
	}
	if err := p.sessionErr(); err != nil {
		return "", err
	}
	item, claim := p.items+id, p.claims+id
	got, err := rpc.Get(ctx, p.cli, p.s, item)
	if err != nil {
		return "", p.rpcErr(ctx, "move", err)
	}
	if len(got.Kvs) == 0 {
		return "", fmt.Errorf("%w: %s in %s", ErrNotFound, id, p.prefix)
	}
	value, modRev := string(got.Kvs[0].Value), got.Kvs[0].ModRevision
	if err := to.checkSize([]string{value}); err != nil {
		return "", err
	}
	prio := priorityOf(id)
	end := clientv3.GetPrefixRangeEnd(to.items + encodePriority(prio) + "/")
	from := p.items + id
	var floor uint64
	for {
		newID := newID(prio, floor)
		res, err := to.put(ctx, []string{newID}, []string{value}, end, rpc.Txn{
			If: []clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(from), "=", modRev),
				clientv3.Compare(clientv3.CreateRevision(claim), "=", 0),
			},
			Then: []clientv3.Op{clientv3.OpDelete(from)},
			Else: []clientv3.Op{clientv3.OpGet(from, clientv3.WithKeysOnly()), clientv3.OpGet(claim, clientv3.WithKeysOnly())},
		})
		if err != nil {
			return "", to.rpcErr(ctx, "move", err)
		}
		if res == nil || res.Succeeded || len(res.Responses[1].GetResponseRange().Kvs) == 1 {
			return newID, nil
		}
		switch {
		case len(res.Responses[3].GetResponseRange().Kvs) == 1:
			return "", fmt.Errorf("%w: %s in %s", ErrClaimed, id, p.prefix)
		case len(res.Responses[2].GetResponseRange().Kvs) == 0 ||
			res.Responses[2].GetResponseRange().Kvs[0].ModRevision != modRev:
			return "", fmt.Errorf("%w: %s left %s meanwhile", ErrNotFound, id, p.prefix)
		}
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue
		}
		last := strings.TrimPrefix(string(kvs[0].Key), to.items)
		if !validID(last) || stampOf(last) == math.MaxUint64 {
			return "", fmt.Errorf("%w: %q under %s: no item can be enqueued after it", ErrMalformed, kvs[0].Key, to.items)
		}
		floor = stampOf(last) + 1
	}
}
