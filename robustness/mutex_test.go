package robustness

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/mutex"
)

// TestRobustMutex runs workers that lock a mutex, increment a counter in
// etcd with a read and a write fenced by IsOwner, and unlock, under the
// nemesis. Checks:
//
//   - every accepted counter write came from the lock's owner at that
//     revision (replaying the lock's keys), incremented the value the
//     previous accepted write left (no lost update), and carries a token no
//     lower than the previous one;
//   - every lock Lock returned names a real incarnation of its key, and it
//     held the lock at some revision, except the documented narrow case (a
//     waiter whose lease was revoked just before the handoff gets a lock
//     whose IsOwner never holds);
//   - tokens strictly increase from owner to owner;
//   - no holder's key was deleted before the holder learned the lock was
//     over (Unlock, Done), unless the nemesis revoked its lease;
//   - porcupine: the history of acquisitions, each ended where its holder
//     learned of the end, is linearizable against a lock: nobody acquired
//     before the previous holder's Done closed or Unlock began (or, for a
//     revoked lease, the revocation began).
func TestRobustMutex(t *testing.T) {
	const (
		prefix  = "/robust/mutex/"
		name    = prefix + "lock"
		counter = prefix + "counter"
	)
	e := newEnv(t, 4)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases()
	var hs holdings
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		e.mutexWorker(ctx, w, reg, name, counter, &hs)
	})
	stopWatchdog()
	stopHistory()

	e.judge(t, "mutex", hist, func(cs []change) ([]string, string) {
		return e.checkMutex(cs, hs.all(), hs.attempts(), name, counter)
	})
}

func (e *env) mutexWorker(ctx context.Context, w *worker, reg *leases, name, counter string, out *holdings) {
	me := fmt.Sprintf("mutex worker %d", w.id)
	e.track(me)
	defer e.untrack(me)
	var ends sync.WaitGroup
	defer ends.Wait() // after the session is closed: every Done has closed
	x := &sessions{w: w, reg: reg}
	defer x.close()
	var m *mutex.Mutex
	for ctx.Err() == nil {
		s, fresh, err := x.get(ctx)
		if err != nil {
			return
		}
		if fresh {
			if m, err = mutex.New(s, name); err != nil {
				continue // the session ended already
			}
		}
		lctx, cancel := bounded(ctx)
		call := e.now()
		l, err := m.Lock(lctx)
		ret := e.now()
		cancel()
		e.op()
		if err != nil {
			e.stalled(me+": Lock", call, ret, err)
			out.fail(attempt{w.id, s.Lease(), call, ret, err})
			x.failed(err)
			continue
		}
		e.progressed(me)
		h := &holding{worker: w.id, key: l.Key(), token: l.Token(), lease: s.Lease(), call: call, ret: ret}
		out.add(h)
		e.watchEnd(h, l, &ends)

		// A read-modify-write of the counter: if two workers ever held at
		// once, both writes would be accepted and one increment lost.
		e.increment(ctx, w, l, h, counter)
		select {
		case <-time.After(e.holdTime()):
		case <-l.Done():
		case <-ctx.Done():
		}
		uctx, cancel := cleanupCtx(ctx)
		err = e.releasing(h, func() error { return l.Unlock(uctx) })
		cancel()
		if err != nil && s.Err() == nil && l.Err() == nil {
			// The lock may still be held (the unlock did not get
			// through): closing the session releases it.
			x.close()
		}
	}
}

func (e *env) increment(ctx context.Context, w *worker, l *mutex.Lock, h *holding, counter string) {
	cctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := w.cli.Get(cctx, counter)
	if err != nil {
		return
	}
	n := 0
	if len(resp.Kvs) > 0 {
		n, _ = strconv.Atoi(strings.Fields(string(resp.Kvs[0].Value))[0])
	}
	value := fmt.Sprintf("%d %d %d", n+1, l.Token(), w.id)
	txn, err := w.cli.Txn(cctx).If(l.IsOwner()).Then(clientv3.OpPut(counter, value)).Commit()
	if err == nil {
		h.fenced(txn.Succeeded)
	}
}

func (e *env) checkMutex(cs []change, hs []*holding, failed []attempt, name, counter string) (violations []string, notes string) {
	bad := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	lock := newRanks(name+"/", 1)
	created := map[incarnation]bool{}
	var n, writes int
	var lastToken, lastOwner int64
	for _, rev := range revisions(cs) {
		lock.apply(rev)
		for _, c := range rev {
			if !c.del && c.version == 1 {
				created[incarnation{c.key, c.create}] = true
			}
			if c.key != counter || c.del {
				continue
			}
			writes++
			var got, worker int
			var token int64
			fmt.Sscanf(c.value, "%d %d %d", &got, &token, &worker)
			if got != n+1 {
				bad("counter write at revision %d by worker %d (token %d) is %d after %d: an update was lost", c.rev, worker, token, got, n)
			}
			n = got
			if token < lastToken {
				bad("counter write at revision %d carries token %d after token %d", c.rev, token, lastToken)
			}
			lastToken = token
			if _, ok := lock.holds(token); !ok {
				bad("counter write at revision %d by worker %d with token %d, which did not hold the lock then (owner %v)", c.rev, worker, token, lock.holders())
			}
		}
		if owners := lock.holders(); len(owners) == 1 && owners[0].create != lastOwner {
			if owners[0].create < lastOwner {
				bad("owner at revision %d has token %d after token %d", rev[0].rev, owners[0].create, lastOwner)
			}
			lastOwner = owners[0].create
		}
	}

	revoked := e.revokedAt()
	gone := ends(cs)
	var real []*holding
	phantoms := 0
	for _, h := range hs {
		switch {
		case !created[h.inc()]:
			bad("worker %d was given a lock with key %s and token %d, which etcd never created", h.worker, h.key, h.token)
		case lock.held[h.inc()] == 0:
			// The one exception the mutex documents: a waiter's lease
			// revoked in the instant before the handoff. Its lock's
			// IsOwner never holds.
			_, wasRevoked := revoked[h.lease]
			if !wasRevoked || h.wrote > 0 {
				bad("worker %d was given a lock (token %d) that never held: lease revoked %v, fenced writes accepted %d", h.worker, h.token, wasRevoked, h.wrote)
			}
			phantoms++
		default:
			real = append(real, h)
		}
	}
	slices.SortFunc(real, func(a, b *holding) int { return cmp.Compare(lock.held[a.inc()], lock.held[b.inc()]) })
	for i := 1; i < len(real); i++ {
		if real[i].token <= real[i-1].token {
			bad("token %d of worker %d's lock follows token %d", real[i].token, real[i].worker, real[i-1].token)
		}
	}
	end := e.now()
	violations = append(violations, lateEnds(real, revoked, gone, end)...)
	violations = append(violations, e.lateHandoffs("lock", lock, cs, hs, failed)...)
	verdict := "linearizable"
	if v, ok := linearizable("mutex", permitModel(1), permitOps(real, revoked, gone, end)); v != "" {
		bad("%s", v)
		verdict = "NOT linearizable"
	} else if !ok {
		verdict = "linearizability check timed out"
	}
	notes = fmt.Sprintf("%d locks held, %d counter writes accepted, %d phantom locks (revoked waiters), porcupine: %s", len(real), writes, phantoms, verdict)
	return violations, notes
}

// lateEnds reports holdings whose key the observer saw deleted before
// their holder learned that they had ended, when no revocation explains
// it: the holder was acting on an ownership the server had already taken
// back.
func lateEnds(hs []*holding, revoked map[clientv3.LeaseID]time.Duration, gone map[incarnation]change, end time.Duration) []string {
	var out []string
	for _, h := range hs {
		if _, ok := revoked[h.lease]; ok {
			continue
		}
		c, ok := gone[h.inc()]
		if !ok {
			continue
		}
		if learned := h.learned(revoked, end); c.seen < learned {
			out = append(out, fmt.Sprintf("worker %d's %s (token %d) was deleted at revision %d, seen at %v, before its holder learned of the end at %v",
				h.worker, h.key, h.token, c.rev, c.seen.Round(time.Millisecond), learned.Round(time.Millisecond)))
		}
	}
	return out
}
