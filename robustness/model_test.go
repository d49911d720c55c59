package robustness

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// checkTimeout bounds one porcupine check. A check that runs out of time
// is inconclusive, which the summary says; it is not a violation.
const checkTimeout = 2 * time.Minute

// maxPermits is the largest limit the permit model handles.
const maxPermits = 4

// permitInput is one operation of the permit model: an ownership, named by
// its token, begins or ends.
type permitInput struct {
	acquire bool
	token   int64
}

// permitState is the set of current holders' tokens, sorted, zero-padded.
type permitState [maxPermits]int64

// permitModel is a semaphore of limit permits; limit 1 is a lock. Acquire
// is legal while fewer than limit hold; release only by a holder. With
// each ownership's release placed where its holder learned of the end, a
// legal linearization means no one acquired while limit others still
// believed they held.
func permitModel(limit int) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return permitState{} },
		Step: func(state, input, _ any) (bool, any) {
			s, in := state.(permitState), input.(permitInput)
			i := slices.Index(s[:], in.token)
			if in.acquire {
				n := slices.Index(s[:], 0)
				if i >= 0 || n < 0 || n >= limit {
					return false, s
				}
				s[n] = in.token
			} else {
				if i < 0 {
					return false, s
				}
				s[i] = 0
			}
			slices.SortFunc(s[:], func(a, b int64) int { // zeros last
				switch {
				case a == b:
					return 0
				case a == 0:
					return 1
				case b == 0:
					return -1
				case a < b:
					return -1
				}
				return 1
			})
			return true, s
		},
		DescribeOperation: func(input, _ any) string {
			in := input.(permitInput)
			if in.acquire {
				return fmt.Sprintf("acquire %d", in.token)
			}
			return fmt.Sprintf("release %d", in.token)
		},
		DescribeState: func(state any) string { return fmt.Sprint(state.(permitState)) },
	}
}

// permitOps turns holdings into the permit model's history: an acquire
// over the call that returned the ownership, and a release from when the
// holder learned of the end to when it had certainly ended.
func permitOps(hs []*holding, revoked map[clientv3.LeaseID]time.Duration, gone map[incarnation]change, end time.Duration) []porcupine.Operation {
	var ops []porcupine.Operation
	for _, h := range hs {
		learned := h.learned(revoked, end)
		ended := max(h.ended(gone, end), learned)
		ops = append(ops,
			porcupine.Operation{ClientId: h.worker, Input: permitInput{true, h.token}, Call: int64(h.call), Return: int64(h.ret)},
			porcupine.Operation{ClientId: h.worker, Input: permitInput{false, h.token}, Call: int64(learned), Return: int64(ended)})
	}
	return ops
}

// linearizable checks ops against model. It returns a violation, or ""
// and whether the check was conclusive. A history that is not
// linearizable is drawn to a file whose name the violation gives.
func linearizable(name string, model porcupine.Model, ops []porcupine.Operation) (violation string, conclusive bool) {
	res, info := porcupine.CheckOperationsVerbose(model, ops, checkTimeout)
	switch res {
	case porcupine.Ok:
		return "", true
	case porcupine.Unknown:
		return "", false
	}
	f, err := os.CreateTemp("", "lockstep-robust-"+name+"-*.html")
	where := ""
	if err == nil {
		if porcupine.Visualize(model, info, f) == nil {
			where = "; drawn in " + f.Name()
		}
		f.Close()
	}
	return fmt.Sprintf("%s: history of %d operations is not linearizable%s", name, len(ops), where), true
}

// ranks replays the keys of a queue of owners (a mutex, a semaphore, an
// election) revision by revision: the limit oldest live keys hold.
type ranks struct {
	dir   string
	limit int
	live  map[string]int64 // key -> create revision
	held  map[incarnation]int64
}

func newRanks(dir string, limit int) *ranks {
	return &ranks{dir: dir, limit: limit, live: map[string]int64{}, held: map[incarnation]int64{}}
}

// apply replays the changes of one revision that concern the queue and
// records who holds after it.
func (r *ranks) apply(cs []change) {
	for _, c := range cs {
		if len(c.key) <= len(r.dir) || c.key[:len(r.dir)] != r.dir {
			continue
		}
		if c.del {
			delete(r.live, c.key)
		} else {
			r.live[c.key] = c.create
		}
	}
	for _, inc := range r.holders() {
		if _, ok := r.held[inc]; !ok {
			r.held[inc] = cs[0].rev
		}
	}
}

// holders returns the keys that hold now, oldest first.
func (r *ranks) holders() []incarnation {
	var all []incarnation
	for k, c := range r.live {
		all = append(all, incarnation{k, c})
	}
	slices.SortFunc(all, func(a, b incarnation) int { return cmp.Compare(a.create, b.create) })
	return all[:min(len(all), r.limit)]
}

// holds reports whether the incarnation created at token holds now, and
// its key.
func (r *ranks) holds(token int64) (string, bool) {
	for _, inc := range r.holders() {
		if inc.create == token {
			return inc.key, true
		}
	}
	return "", false
}

// handoffLimit is how long an owner may go without learning that it owns
// (its Lock or Acquire returning) while the cluster is healthy. A handoff
// takes milliseconds; a waiter that misses its turn holds up everyone
// behind it. Any fault excuses the time it is active and handoffSettle
// after (a watch stream on a stopped or partitioned member resumes
// elsewhere or catches up).
const (
	handoffLimit  = 1500 * time.Millisecond
	handoffSettle = time.Second
)

// lateHandoffs reports the owners in r's replay that learned they owned
// more than handoffLimit of healthy time after the observer saw them become
// owners: the call that was to return the ownership returned it late, or
// failed (ran out of time) although its session owned.
func (e *env) lateHandoffs(what string, r *ranks, cs []change, hs []*holding, failed []attempt) []string {
	seen := map[int64]time.Duration{}
	lease := map[incarnation]clientv3.LeaseID{}
	for _, c := range cs {
		if _, ok := seen[c.rev]; !ok {
			seen[c.rev] = c.seen
		}
		lease[incarnation{c.key, c.create}] = c.lease
	}
	handed := map[incarnation]time.Duration{}
	for _, h := range hs {
		handed[h.inc()] = h.ret
	}
	var out []string
	for inc, rev := range r.held {
		owned := seen[rev]
		knew, ok := handed[inc]
		how := "returned it"
		if !ok {
			// A call of its session that was waiting then and failed.
			for _, a := range failed {
				if a.lease == lease[inc] && a.call <= owned && owned <= a.ret {
					knew, ok, how = a.ret, true, fmt.Sprintf("(called at %v) gave up (%v)", a.call.Round(time.Millisecond), a.err)
				}
			}
		}
		if !ok {
			continue
		}
		if healthy := e.healthy(owned, knew, handoffSettle); healthy > handoffLimit {
			out = append(out, fmt.Sprintf("late handoff: %s %s became owner at revision %d (seen at %v); the call waiting for it %s at %v, %v of it with no fault active or just healed (faults: %s)",
				what, inc.key, rev, owned.Round(time.Millisecond), how, knew.Round(time.Millisecond), healthy.Round(time.Millisecond), e.faultsIn(owned-handoffSettle, knew)))
		}
	}
	slices.Sort(out)
	return out
}
