package barrier

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/keys"
)

// Key layout of a DoubleBarrier with prefix P (see docs/barrier.md):
//
//	P/ready               exists while a round is open; no lease. Its create
//	                      revision names the round; its value is the count
//	                      and the roster: the id and create revision of each
//	                      party of the round.
//	P/parties/<id>        one per participant that has entered, attached to
//	                      its session's lease; value "entered <count>" or
//	                      "left <count>".
//	P/parties/<id>.watch  while <id> waits in Leave: attached to the lease of
//	                      the party it watches, so that the party's death
//	                      deletes it; value: that party's id.
//
// <id> is the lease in hexadecimal, "-", and a number unique in this
// process, so that several participants can share one session.
type layout struct {
	ready   string
	parties string // with its trailing "/"
}

const (
	stateEntered = "entered"
	stateLeft    = "left"
	watchSuffix  = ".watch"
)

func newLayout(prefix string) layout {
	dir := keys.Dir(prefix)
	return layout{ready: dir + "ready", parties: dir + "parties/"}
}

func (l layout) party(id string) string { return l.parties + id }
func (l layout) proxy(id string) string { return l.parties + id + watchSuffix }

// own is the key range that holds a party's key and its proxy, and nothing
// else: ids never contain "/" and never extend another id by a character
// below "/".
func (l layout) own(id string) (key, end string) { return l.parties + id, l.parties + id + "/" }

var idSeq atomic.Int64

func newID(lease clientv3.LeaseID) string {
	return fmt.Sprintf("%x-%d", int64(lease), idSeq.Add(1))
}

// leaseOf parses the lease out of an id.
func leaseOf(id string) (clientv3.LeaseID, bool) {
	hex, seq, ok := strings.Cut(id, "-")
	if !ok {
		return 0, false
	}
	if _, err := strconv.ParseUint(seq, 10, 63); err != nil {
		return 0, false
	}
	l, err := strconv.ParseInt(hex, 16, 64)
	return clientv3.LeaseID(l), err == nil
}

func partyValue(state string, count int) string { return state + " " + strconv.Itoa(count) }

// member is one party of a round's roster.
type member struct {
	id  string
	rev int64 // create revision of its party key
}

// round is an open round as its ready key describes it.
type round struct {
	rev    int64 // create revision of the ready key: the round's identity
	count  int
	roster []member // ordered by rev
}

func (r *round) encode() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.count))
	for _, m := range r.roster {
		fmt.Fprintf(&b, "\n%s %d", m.id, m.rev)
	}
	return b.String()
}

func decodeRound(kv *mvccpb.KeyValue) (*round, error) {
	lines := strings.Split(string(kv.Value), "\n")
	count, err := strconv.Atoi(lines[0])
	if err != nil || count < 1 || len(lines) != count+1 {
		return nil, fmt.Errorf("%w: %s = %q", ErrMalformed, kv.Key, kv.Value)
	}
	r := &round{rev: kv.CreateRevision, count: count}
	for _, line := range lines[1:] {
		id, revs, _ := strings.Cut(line, " ")
		rev, err := strconv.ParseInt(revs, 10, 64)
		if _, ok := leaseOf(id); !ok || err != nil {
			return nil, fmt.Errorf("%w: %s = %q", ErrMalformed, kv.Key, kv.Value)
		}
		r.roster = append(r.roster, member{id, rev})
	}
	return r, nil
}

// has reports whether the party id, registered at rev, belongs to the round.
func (r *round) has(id string, rev int64) bool {
	return slices.Contains(r.roster, member{id, rev})
}

// party is a participant's key as read from etcd.
type party struct {
	id    string
	rev   int64 // create revision
	left  bool
	count int
}

// snapshot is what one read or transaction saw under the prefix.
type snapshot struct {
	rev     int64             // header revision
	round   *round            // nil when no round is open
	parties map[string]party  // by id; nil when not read
	proxies map[string]string // watcher id -> id of the party it watches
}

// parse builds a snapshot from the responses of a ready get (nil if the
// transaction did not read it) and a parties get.
func (l layout) parse(rev int64, ready, parties *clientv3.GetResponse) (*snapshot, error) {
	s := &snapshot{rev: rev, parties: map[string]party{}, proxies: map[string]string{}}
	if ready != nil && len(ready.Kvs) == 1 {
		r, err := decodeRound(ready.Kvs[0])
		if err != nil {
			return nil, err
		}
		s.round = r
	}
	for _, kv := range parties.Kvs {
		name := strings.TrimPrefix(string(kv.Key), l.parties)
		if id, ok := strings.CutSuffix(name, watchSuffix); ok {
			if _, ok := leaseOf(id); ok {
				s.proxies[id] = string(kv.Value)
			}
			continue
		}
		if _, ok := leaseOf(name); !ok {
			continue // not ours: a prefix nested under this one
		}
		state, n, _ := strings.Cut(string(kv.Value), " ")
		count, err := strconv.Atoi(n)
		if err != nil || (state != stateEntered && state != stateLeft) {
			return nil, fmt.Errorf("%w: %s = %q", ErrMalformed, kv.Key, kv.Value)
		}
		s.parties[name] = party{id: name, rev: kv.CreateRevision, left: state == stateLeft, count: count}
	}
	return s, nil
}

// present reports whether m's party key, the incarnation in the roster,
// still exists. A snapshot without parties knows nothing and says yes.
func (s *snapshot) present(m member) bool {
	if s.parties == nil {
		return true
	}
	p, ok := s.parties[m.id]
	return ok && p.rev == m.rev
}

// queue returns the registered parties with the given count that no round
// holds, oldest first: the next round's candidates.
func (s *snapshot) queue(count int) []member {
	var q []member
	for _, p := range s.parties {
		if p.count == count && !p.left {
			q = append(q, member{p.id, p.rev})
		}
	}
	slices.SortFunc(q, func(a, b member) int { return cmp.Compare(a.rev, b.rev) })
	return q
}
