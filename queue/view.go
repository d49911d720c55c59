package queue

import (
	"math/rand/v2"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// minWindow is the fewest keys a Dequeue reads from the head of the
	// queue.
	minWindow = 32

	// maxSpread bounds how many items a Dequeue that keeps losing races to
	// other processes chooses among.
	maxSpread = 8
)

// entry is one item as a view shows it.
type entry struct {
	id      string
	key     string
	modRev  int64
	version int64 // 1 + deliveries so far
	claimed bool
}

// view is the head of the queue at one revision: the first items in key
// order (priority, then arrival) and which of them are claimed.
type view struct {
	rev   int64
	items []entry
	more  bool            // items beyond these exist, or their claims were not all read
	freed <-chan struct{} // local releases after this view was taken
}

// viewOps reads the head of the queue: keys only, so that large values
// are not sent; the claim sends the value of the one item it takes.
func (q *Queue) viewOps(window int64) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(q.items, clientv3.WithRange(q.itemsEnd), clientv3.WithLimit(window), clientv3.WithKeysOnly()),
		clientv3.OpGet(q.claims, clientv3.WithRange(q.claimsEnd), clientv3.WithLimit(window), clientv3.WithKeysOnly()),
	}
}

// parseView builds a view from the responses to viewOps.
func (q *Queue) parseView(rev int64, items, claims *pb.RangeResponse, freed <-chan struct{}) *view {
	v := &view{rev: rev, more: items.More, freed: freed}
	claimed := make(map[string]bool, len(claims.Kvs))
	for _, kv := range claims.Kvs {
		claimed[strings.TrimPrefix(string(kv.Key), q.claims)] = true
	}
	// Claims sort like their items. If not all claims were read, the claim
	// state of items after the last one read is unknown: leave them out.
	bound := ""
	if claims.More && len(claims.Kvs) > 0 {
		bound = strings.TrimPrefix(string(claims.Kvs[len(claims.Kvs)-1].Key), q.claims)
	}
	v.items = make([]entry, 0, len(items.Kvs))
	for _, kv := range items.Kvs {
		id := strings.TrimPrefix(string(kv.Key), q.items)
		if !validID(id) {
			continue
		}
		if bound != "" && id > bound {
			v.more = true
			break
		}
		v.items = append(v.items, entry{
			id:      id,
			key:     string(kv.Key),
			modRev:  kv.ModRevision,
			version: kv.Version,
			claimed: claimed[id],
		})
	}
	return v
}

// choose picks the item to claim: the first unclaimed item that no
// Dequeue of this process is busy with. Only when this Dequeue has lost
// races to other processes (spread > 1) does it pick at random among the
// first spread such items of the same priority, so that consumers on many
// machines do not all collide on the head. It also returns how many items
// it passed over, to size the next window.
func choose(v *view, loc *local, spread int) (e entry, passed int, ok bool) {
	var cands []entry
	prio := ""
	for i, it := range v.items {
		if it.claimed || loc.isBusy(it.key) {
			continue
		}
		p := it.id[:prioLen]
		if prio == "" {
			prio, passed = p, i
		} else if p != prio {
			break
		}
		cands = append(cands, it)
		if len(cands) >= spread {
			break
		}
	}
	if len(cands) == 0 {
		return entry{}, len(v.items), false
	}
	return cands[rand.N(len(cands))], passed, true
}
