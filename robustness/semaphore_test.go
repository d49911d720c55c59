package robustness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/semaphore"
)

// semLimit is the semaphore's limit: fewer than its workers, so that they
// queue.
const semLimit = 3

// TestRobustSemaphore runs workers that acquire a permit of a semaphore of
// limit 3, write "enter" and then "exit" records fenced by IsOwner, and
// release, under the nemesis. Checks:
//
//   - replaying etcd's history by revision, every accepted record came from
//     a permit among the limit oldest keys at that revision, and at no
//     revision were more than limit holders inside (between their enter
//     record and their exit record or the deletion of their key);
//   - every permit Acquire returned names a real incarnation that held at
//     some revision (or is explained by a revoked lease, as for the mutex);
//   - no holder's key was deleted before the holder learned its permit was
//     over, unless the nemesis revoked its lease;
//   - porcupine: the acquisitions, each ended where its holder learned of
//     the end, are linearizable against a semaphore of limit 3.
func TestRobustSemaphore(t *testing.T) {
	const (
		prefix = "/robust/semaphore/"
		name   = prefix + "sem"
		log    = prefix + "log/"
	)
	e := newEnv(t, 6)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases()
	var hs holdings
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		e.semaphoreWorker(ctx, w, reg, name, log, &hs)
	})
	stopWatchdog()
	stopHistory()

	e.judge(t, "semaphore", hist, func(cs []change) ([]string, string) {
		return e.checkSemaphore(cs, hs.all(), hs.attempts(), name, log)
	})
}

func (e *env) semaphoreWorker(ctx context.Context, w *worker, reg *leases, name, log string, out *holdings) {
	me := fmt.Sprintf("semaphore worker %d", w.id)
	e.track(me)
	defer e.untrack(me)
	var ends sync.WaitGroup
	defer ends.Wait()
	x := &sessions{w: w, reg: reg}
	defer x.close()
	record := fmt.Sprintf("%s%d", log, w.id)
	var sem *semaphore.Semaphore
	for ctx.Err() == nil {
		s, fresh, err := x.get(ctx)
		if err != nil {
			return
		}
		if fresh {
			if sem, err = semaphore.New(s, name, semLimit); err != nil {
				continue
			}
		}
		actx, cancel := bounded(ctx)
		call := e.now()
		p, err := sem.Acquire(actx)
		ret := e.now()
		cancel()
		e.op()
		if err != nil {
			e.stalled(me+": Acquire", call, ret, err)
			out.fail(attempt{w.id, s.Lease(), call, ret, err})
			x.failed(err)
			continue
		}
		e.progressed(me)
		h := &holding{worker: w.id, key: p.Key(), token: p.Token(), lease: s.Lease(), call: call, ret: ret}
		out.add(h)
		e.watchEnd(h, p, &ends)

		e.fencedPut(ctx, w, h, p.IsOwner(), record, fmt.Sprintf("enter %d", p.Token()))
		select {
		case <-time.After(e.holdTime()):
		case <-p.Done():
		case <-ctx.Done():
		}
		e.fencedPut(ctx, w, h, p.IsOwner(), record, fmt.Sprintf("exit %d", p.Token()))
		rctx, cancel := cleanupCtx(ctx)
		err = e.releasing(h, func() error { return p.Release(rctx) })
		cancel()
		if err != nil && s.Err() == nil && p.Err() == nil {
			x.close() // the permit may still be held: the session releases it
		}
	}
}

// fencedPut writes key = value only while guard holds, and records the
// outcome in h.
func (e *env) fencedPut(ctx context.Context, w *worker, h *holding, guard clientv3.Cmp, key, value string) {
	cctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := w.cli.Txn(cctx).If(guard).Then(clientv3.OpPut(key, value)).Commit()
	if err == nil {
		h.fenced(resp.Succeeded)
	}
}

func (e *env) checkSemaphore(cs []change, hs []*holding, failed []attempt, name, log string) (violations []string, notes string) {
	bad := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	sem := newRanks(name+"/", semLimit)
	created := map[incarnation]bool{}
	inside := map[int64]bool{} // tokens between enter and exit
	most, records := 0, 0
	for _, rev := range revisions(cs) {
		sem.apply(rev)
		for _, c := range rev {
			if !c.del && c.version == 1 {
				created[incarnation{c.key, c.create}] = true
			}
			if c.del && strings.HasPrefix(c.key, name+"/") {
				delete(inside, c.create) // a stay ends with the key at the latest
			}
			if c.del || !strings.HasPrefix(c.key, log) {
				continue
			}
			records++
			what, tok, _ := strings.Cut(c.value, " ")
			token, _ := strconv.ParseInt(tok, 10, 64)
			if _, ok := sem.holds(token); !ok {
				bad("%s record at revision %d by %s with token %d, which held no permit then (holders %v)", what, c.rev, c.key, token, sem.holders())
			}
			if what == "enter" {
				inside[token] = true
			} else {
				delete(inside, token)
			}
		}
		if len(inside) > semLimit {
			bad("%d holders inside at revision %d, limit %d", len(inside), rev[0].rev, semLimit)
		}
		most = max(most, len(inside))
	}

	revoked := e.revokedAt()
	gone := ends(cs)
	var real []*holding
	phantoms := 0
	for _, h := range hs {
		switch {
		case !created[h.inc()]:
			bad("worker %d was given a permit with key %s and token %d, which etcd never created", h.worker, h.key, h.token)
		case sem.held[h.inc()] == 0:
			_, wasRevoked := revoked[h.lease]
			if !wasRevoked || h.wrote > 0 {
				bad("worker %d was given a permit (token %d) that never held: lease revoked %v, fenced writes accepted %d", h.worker, h.token, wasRevoked, h.wrote)
			}
			phantoms++
		default:
			real = append(real, h)
		}
	}
	end := e.now()
	violations = append(violations, lateEnds(real, revoked, gone, end)...)
	violations = append(violations, e.lateHandoffs("permit", sem, cs, hs, failed)...)
	verdict := "linearizable"
	if v, ok := linearizable("semaphore", permitModel(semLimit), permitOps(real, revoked, gone, end)); v != "" {
		bad("%s", v)
		verdict = "NOT linearizable"
	} else if !ok {
		verdict = "linearizability check timed out"
	}
	notes = fmt.Sprintf("%d permits held, %d fenced records accepted, at most %d inside at once, %d phantom permits (revoked waiters), porcupine: %s",
		len(real), records, most, phantoms, verdict)
	return violations, notes
}
