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

	// boundSpan is how many items an unbounded read of the head returns, and
	// so how far the bound it sets lies from the head.
	boundSpan = 256
)

// head describes one read of the head of the queue.
//
// etcd computes the total count of every ranged read in a transaction,
// whatever its limit, so a read costs the server a visit to every key in
// its range: a read of [items/, end) on a long queue would cost a visit to
// each queued item. So reads stop at a bound instead: the ID of an item
// some boundSpan items from the head, learned by an unbounded read and
// shared by the Dequeues of this process. A Dequeue that finds nothing to
// claim before the bound reads the whole range once and moves the bound.
// Items before the bound are all seen, so the choice of the first
// claimable item is the same as with an unbounded read.
type head struct {
	window int64
	bound  string          // read items up to this ID only; "" for all
	freed  <-chan struct{} // local releases after this read
}

// entry is one item as a view shows it.
type entry struct {
	id      string
	key     string
	modRev  int64
	version int64 // 1 + deliveries so far
	claimed bool
	claimer int64 // the claim's lease
}

// view is the head of the queue at one revision: the first items in key
// order (priority, then arrival) and which of them are claimed.
type view struct {
	rev   int64
	items []entry
	more  bool            // the limit cut the read short: items beyond these exist
	bound string          // the read stopped at this ID; "" if it did not
	freed <-chan struct{} // local releases after this view was taken
}

// headOps reads the head of the queue: keys only, so that large values
// are not sent; the claim sends the value of the one item it takes.
func (q *Queue) headOps(h head) []clientv3.Op {
	itemsEnd, claimsEnd := q.itemsEnd, q.claimsEnd
	if h.bound != "" {
		itemsEnd, claimsEnd = q.items+h.bound+"\x00", q.claims+h.bound+"\x00"
	}
	return []clientv3.Op{
		clientv3.OpGet(q.items, clientv3.WithRange(itemsEnd), clientv3.WithLimit(h.window), clientv3.WithKeysOnly()),
		clientv3.OpGet(q.claims, clientv3.WithRange(claimsEnd), clientv3.WithLimit(h.window), clientv3.WithKeysOnly()),
	}
}

// parseView builds a view from the responses to headOps.
func (q *Queue) parseView(h head, rev int64, items, claims *pb.RangeResponse) *view {
	v := &view{rev: rev, more: items.More, bound: h.bound, freed: h.freed}
	claimer := make(map[string]int64, len(claims.Kvs))
	for _, kv := range claims.Kvs {
		claimer[strings.TrimPrefix(string(kv.Key), q.claims)] = kv.Lease
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
		})
		e := &v.items[len(v.items)-1]
		e.claimer, e.claimed = claimer[id]
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
