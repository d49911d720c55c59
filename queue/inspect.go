package queue

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Info describes an item as one read of etcd saw it: what List, Peek and
// Get return. It is a copy; the item may have been claimed, acked or
// removed since.
type Info struct {
	ID       string
	Value    string
	Priority int
	// Attempts counts the deliveries so far, the one in progress included.
	Attempts int
	// Claimed is true while a consumer holds the item; ClaimLease is the
	// lease of its session and ClaimRevision the etcd revision of its claim.
	Claimed       bool
	ClaimLease    int64
	ClaimRevision int64
	// Revision is the etcd revision the item was enqueued at.
	Revision int64
}

// List returns up to limit items (all of them for 0) in the order they are
// served, claimed ones included, as of one revision. It costs one round
// trip; the reply holds the values of the items listed and every claim.
func (p *Producer) List(ctx context.Context, limit int) ([]Info, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalidOption, limit)
	}
	res, err := rpc.Commit(ctx, p.cli, p.s, rpc.Txn{Then: []clientv3.Op{
		clientv3.OpGet(p.items, clientv3.WithRange(p.itemsEnd), clientv3.WithLimit(int64(limit))),
		clientv3.OpGet(p.claims, clientv3.WithRange(p.claimsEnd)),
	}})
	if err != nil {
		return nil, p.rpcErr(ctx, "list", err)
	}
	return p.infos(res.Responses[0].GetResponseRange().Kvs, res.Responses[1].GetResponseRange().Kvs), nil
}

// Peek returns the item the next Dequeue would receive: the first one not
// claimed. It returns ErrNotFound if every item is claimed or the queue is
// empty. It costs two round trips, reads of the claims and of as many items
// as there are claims, plus one, at one revision.
func (p *Producer) Peek(ctx context.Context) (Info, error) {
	claims, err := rpc.Get(ctx, p.cli, p.s, p.claims, clientv3.WithRange(p.claimsEnd))
	if err != nil {
		return Info{}, p.rpcErr(ctx, "peek", err)
	}
	items, err := rpc.Get(ctx, p.cli, p.s, p.items, clientv3.WithRange(p.itemsEnd),
		clientv3.WithLimit(int64(len(claims.Kvs)+1)), clientv3.WithRev(claims.Header.Revision))
	if err != nil {
		return Info{}, p.rpcErr(ctx, "peek", err)
	}
	for _, in := range p.infos(items.Kvs, claims.Kvs) {
		if !in.Claimed {
			return in, nil
		}
	}
	return Info{}, fmt.Errorf("%w: no unclaimed item in %s", ErrNotFound, p.prefix)
}

// Get returns the item id, or ErrNotFound. It costs one round trip.
func (p *Producer) Get(ctx context.Context, id string) (Info, error) {
	if !validID(id) {
		return Info{}, fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	res, err := rpc.Commit(ctx, p.cli, p.s, rpc.Txn{Then: []clientv3.Op{
		clientv3.OpGet(p.items + id),
		clientv3.OpGet(p.claims + id),
	}})
	if err != nil {
		return Info{}, p.rpcErr(ctx, "get", err)
	}
	infos := p.infos(res.Responses[0].GetResponseRange().Kvs, res.Responses[1].GetResponseRange().Kvs)
	if len(infos) == 0 {
		return Info{}, fmt.Errorf("%w: %s in %s", ErrNotFound, id, p.prefix)
	}
	return infos[0], nil
}

// Remove deletes the item id, and its claim if a consumer holds it (that
// consumer's Item ends with lockstep.ErrLost, and its Ack fails with
// ErrClaimLost). It returns ErrNotFound if there is no such item. If an
// attempt went unanswered and the item is gone when the retry looks,
// Remove returns nil: it was removed, by this call or by an Ack meanwhile.
// It costs one round trip.
func (p *Producer) Remove(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	if err := p.sessionErr(); err != nil {
		return err
	}
	res, err := rpc.Commit(ctx, p.cli, p.s, rpc.Txn{
		If:   []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(p.items+id), ">", 0)},
		Then: []clientv3.Op{clientv3.OpDelete(p.items + id), clientv3.OpDelete(p.claims + id)},
	})
	switch {
	case err != nil:
		return p.rpcErr(ctx, "remove", err)
	case !res.Succeeded && !res.Retried:
		return fmt.Errorf("%w: %s in %s", ErrNotFound, id, p.prefix)
	}
	return nil
}

// Purge deletes every item of the queue and every claim, in one
// transaction, and returns how many items it deleted (0 if an attempt went
// unanswered and had deleted them). Consumers holding items see their
// claims end as with Remove. It costs one round trip.
func (p *Producer) Purge(ctx context.Context) (int, error) {
	if err := p.sessionErr(); err != nil {
		return 0, err
	}
	res, err := rpc.Commit(ctx, p.cli, p.s, rpc.Txn{Then: []clientv3.Op{
		clientv3.OpDelete(p.items, clientv3.WithRange(p.itemsEnd)),
		clientv3.OpDelete(p.claims, clientv3.WithRange(p.claimsEnd)),
	}})
	if err != nil {
		return 0, p.rpcErr(ctx, "purge", err)
	}
	return int(res.Responses[0].GetResponseDeleteRange().Deleted), nil
}

// infos joins items with their claims, in the items' order; keys of any
// other shape are left out.
func (p *Producer) infos(items, claims []*mvccpb.KeyValue) []Info {
	claimOf := make(map[string]*mvccpb.KeyValue, len(claims))
	for _, kv := range claims {
		claimOf[strings.TrimPrefix(string(kv.Key), p.claims)] = kv
	}
	infos := make([]Info, 0, len(items))
	for _, kv := range items {
		id := strings.TrimPrefix(string(kv.Key), p.items)
		if !validID(id) {
			continue
		}
		in := Info{ID: id, Value: string(kv.Value), Priority: priorityOf(id), Attempts: int(kv.Version - 1), Revision: kv.CreateRevision}
		if c := claimOf[id]; c != nil {
			in.Claimed, in.ClaimLease, in.ClaimRevision = true, c.Lease, c.CreateRevision
		}
		infos = append(infos, in)
	}
	return infos
}
