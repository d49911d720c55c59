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

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// TestRobustLeaderJob runs three leaderjob runners (election underneath)
// whose job works for a while, writing records fenced by the term's
// IsOwner, then yields (Recampaign), under the nemesis. Each job records
// its interval: from its start to the moment it saw its ctx cancelled (or
// returned). Checks:
//
//   - at most one job with a live ctx at any instant: job intervals do not
//     overlap, except where the earlier job's lease was revoked by the
//     nemesis before the later one started (docs/leaderjob.md: a lease
//     revoked from outside is seen by the old leader and the next candidate
//     at the same time; the successor's settle delay orders them only if
//     the old leader is connected, and the nemesis may have cut it off);
//   - no job still ran after the observer saw its term's key deleted,
//     unless its lease was revoked: the job's ctx is cancelled before the
//     lease can expire on the server;
//   - every term a job ran under led at some revision (no phantom
//     leadership), and terms' tokens strictly increase from job to job;
//   - every accepted fenced record came from the leader at that revision,
//     with tokens that never go down.
func TestRobustLeaderJob(t *testing.T) {
	const (
		prefix = "/robust/leaderjob/"
		name   = prefix + "elect"
		log    = prefix + "log/"
	)
	e := newEnv(t, 3)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	const me = "leaderjob (any runner)"
	e.track(me)
	reg := newLeases()
	var jobs jobRuns
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		job := func(jctx context.Context, term *election.Term) error {
			return e.leaderJob(jctx, w, term, reg, log, me, &jobs)
		}
		r, err := leaderjob.New(w.cli, name, job,
			leaderjob.WithIdentity(fmt.Sprintf("worker-%d", w.id)),
			leaderjob.WithTTL(w.ttl),
			leaderjob.WithPolicy(leaderjob.Recampaign),
			leaderjob.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
		if err != nil {
			t.Errorf("leaderjob.New: %v", err)
			return
		}
		r.Run(ctx) // returns ctx's error once ctx ends
	})
	e.untrack(me)
	stopWatchdog()
	stopHistory()

	e.judge(t, "leaderjob", hist, func(cs []change) ([]string, string) {
		return e.checkLeaderJob(cs, jobs.all(), name, log)
	})
}

// jobRun is one run of the job: one term, since the policy is Recampaign.
type jobRun struct {
	worker         int
	key            string
	token          int64
	lease          clientv3.LeaseID
	start, end     time.Duration
	wrote, refused int
}

type jobRuns struct {
	mu   sync.Mutex
	list []*jobRun
}

func (j *jobRuns) add(r *jobRun) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.list = append(j.list, r)
}

func (j *jobRuns) all() []*jobRun {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.list)
}

// leaderJob works for a random while, a fenced write every few
// milliseconds, and yields; it stops at once when its ctx is cancelled.
func (e *env) leaderJob(ctx context.Context, w *worker, t *election.Term, reg *leases, log, tracker string, out *jobRuns) error {
	run := &jobRun{worker: w.id, key: t.Key(), token: t.Token(), lease: t.Session().Lease(), start: e.now()}
	defer out.add(run)
	reg.add(t.Session())
	e.op()
	e.progressed(tracker)
	record := fmt.Sprintf("%s%d", log, w.id)
	yield := time.After(e.between(10*time.Millisecond, 500*time.Millisecond))
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			run.end = e.now()
			return ctx.Err()
		case <-yield:
			run.end = e.now()
			return nil
		case <-time.After(e.between(2*time.Millisecond, 20*time.Millisecond)):
		}
		wctx, cancel := bounded(ctx)
		resp, err := w.cli.Txn(wctx).If(t.IsOwner()).
			Then(clientv3.OpPut(record, fmt.Sprintf("%d %d", t.Token(), seq))).Commit()
		cancel()
		e.op()
		switch {
		case err != nil:
		case resp.Succeeded:
			run.wrote++
			e.progressed(tracker)
		default:
			run.refused++
		}
	}
}

func (e *env) checkLeaderJob(cs []change, runs []*jobRun, name, log string) (violations []string, notes string) {
	bad := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	elect := newRanks(name+"/", 1)
	var lastToken int64
	records := 0
	for _, rev := range revisions(cs) {
		elect.apply(rev)
		for _, c := range rev {
			if c.del || !strings.HasPrefix(c.key, log) {
				continue
			}
			records++
			tok, _, _ := strings.Cut(c.value, " ")
			token, _ := strconv.ParseInt(tok, 10, 64)
			if _, ok := elect.holds(token); !ok {
				bad("record at revision %d by %s with token %d, which did not lead then (leader %v)", c.rev, c.key, token, elect.holders())
			}
			if token < lastToken {
				bad("record at revision %d carries token %d after token %d", c.rev, token, lastToken)
			}
			lastToken = token
		}
	}

	revoked := e.revokedAt()
	gone := ends(cs)
	slices.SortFunc(runs, func(a, b *jobRun) int { return cmp.Compare(a.start, b.start) })
	overlaps, excused := 0, 0
	for i, b := range runs {
		if elect.held[incarnation{b.key, b.token}] == 0 {
			bad("worker %d ran its job under term %d (%s), which never led", b.worker, b.token, b.key)
		}
		if i > 0 && b.token <= runs[i-1].token {
			bad("job of worker %d (term %d) started after a job of term %d", b.worker, b.token, runs[i-1].token)
		}
		if c, ok := gone[incarnation{b.key, b.token}]; ok && c.seen < b.end {
			if _, ok := revoked[b.lease]; !ok {
				bad("job of worker %d (term %d) ran until %v, after the observer saw its term's key deleted at %v (revision %d)",
					b.worker, b.token, b.end.Round(time.Millisecond), c.seen.Round(time.Millisecond), c.rev)
			}
		}
		for _, a := range runs[:i] {
			if b.start >= a.end {
				continue
			}
			overlaps++
			if v, ok := revoked[a.lease]; ok && v <= b.start {
				excused++
				continue
			}
			bad("jobs overlap: worker %d's (term %d) ran %v–%v and worker %d's (term %d) started at %v",
				a.worker, a.token, a.start.Round(time.Millisecond), a.end.Round(time.Millisecond), b.worker, b.token, b.start.Round(time.Millisecond))
		}
	}
	notes = fmt.Sprintf("%d jobs run, %d fenced records accepted, %d overlaps of which %d after a revocation from outside",
		len(runs), records, overlaps, excused)
	return violations, notes
}
