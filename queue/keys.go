package queue

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Priority bounds. A priority is stored as eight hexadecimal digits, its
// offset from MinPriority, so that key order is priority order, negative
// values included.
const (
	MinPriority = math.MinInt32
	MaxPriority = math.MaxInt32
)

// Key layout under prefix P (see docs/queue.md):
//
//	P/items/<prio>/<seq>    the item's value; no lease; version-1 = deliveries so far
//	P/claims/<prio>/<seq>   a delivery in progress, attached to the consumer's lease
//	P/waiters/<lease>-<n>   a Dequeue waiting for work, attached to its lease
//	P/sessions/<lease>      a consumer's fence, attached to its lease (see fence)
//
// <prio> is 8 hex digits (priority - MinPriority); <seq> is 16 hex digits of
// a hybrid clock stamp and 8 random hex digits. An item's ID is
// "<prio>/<seq>". Claims sort like their items and before them, so one
// watch over [P/claims/, end of P/items/) sees everything a waiting
// consumer needs.
const (
	prioLen  = 8
	stampLen = 16
	idLen    = prioLen + 1 + stampLen + 8
)

type layout struct {
	items, itemsEnd   string
	claims, claimsEnd string
	waiters, waitEnd  string
	sessions          string
}

func newLayout(prefix string) layout {
	l := layout{
		items:    prefix + "/items/",
		claims:   prefix + "/claims/",
		waiters:  prefix + "/waiters/",
		sessions: prefix + "/sessions/",
	}
	l.itemsEnd = clientv3.GetPrefixRangeEnd(l.items)
	l.claimsEnd = clientv3.GetPrefixRangeEnd(l.claims)
	l.waitEnd = clientv3.GetPrefixRangeEnd(l.waiters)
	return l
}

func encodePriority(p int) string {
	return fmt.Sprintf("%08x", uint32(int64(p)-MinPriority))
}

// priorityOf decodes the priority from an ID.
func priorityOf(id string) int {
	u, err := strconv.ParseUint(id[:prioLen], 16, 32)
	if err != nil {
		return 0 // not one of our IDs; callers only pass IDs that parsed
	}
	return int(int64(u) + MinPriority)
}

// stampOf decodes the clock stamp from an ID.
func stampOf(id string) uint64 {
	u, _ := strconv.ParseUint(id[prioLen+1:prioLen+1+stampLen], 16, 64)
	return u
}

// validID reports whether id has the shape newID gives it; keys of any
// other shape under the queue's prefix are ignored.
func validID(id string) bool {
	if len(id) != idLen || id[prioLen] != '/' {
		return false
	}
	for i := 0; i < idLen; i++ {
		if i == prioLen {
			continue
		}
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lastStamp is the process-wide hybrid clock: stamps are wall-clock
// nanoseconds, but never repeat or go back in this process, and never fall
// behind a stamp the server showed us.
var lastStamp atomic.Uint64

// nextStamp returns a stamp greater than every stamp handed out before in
// this process and at least floor.
func nextStamp(floor uint64) uint64 {
	for {
		old := lastStamp.Load()
		s := max(uint64(time.Now().UnixNano()), old+1, floor)
		if lastStamp.CompareAndSwap(old, s) {
			return s
		}
	}
}

// newID returns a fresh ID in priority p whose stamp is at least floor. The
// random part keeps IDs unique across processes, so that consumers can use
// them to recognise a redelivery.
func newID(p int, floor uint64) string {
	return fmt.Sprintf("%s/%016x%08x", encodePriority(p), nextStamp(floor), rand.Uint32())
}
