package robustness

import (
	"context"
	"time"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The faults the nemesis injects. Each one heals before the next starts,
// so the cluster keeps a quorum and the workload can make progress between
// faults; what matters is what the primitives do while one is active.
var faultKinds = []string{
	"stop-leader",      // crash the raft leader, restart it on the same data
	"stop-follower",    // crash a follower, restart it
	"partition-member", // cut one member off from its peers, heal
	"blackhole-client", // a worker's packets vanish long enough for its session to expire
	"delay-client",     // a worker's packets are delayed
	"compact",          // compact history while waiters watch
	"revoke-lease",     // revoke a live session's lease from outside
	"reply-lost",       // a worker's writes reach etcd and are applied, but it hears Unavailable
	"cleanup-outage",   // a long-TTL worker is cut off past the cleanup timeout; its session survives
}

// startNemesis runs the nemesis for -robust.duration, or until ctx ends;
// stop waits for it to have healed everything.
func (e *env) startNemesis(ctx context.Context, reg *leases) (stop func()) {
	done := make(chan struct{})
	nctx, cancel := context.WithTimeout(ctx, *duration)
	go func() {
		defer close(done)
		e.nemesis(nctx, reg)
	}()
	return func() {
		<-done
		cancel()
	}
}

// nemesis injects random faults until ctx ends, then heals everything.
// Now and then it leaves the cluster alone for a few seconds, so that the
// workload runs on a healthy cluster too and a hang can be told from a
// fault.
func (e *env) nemesis(ctx context.Context, reg *leases) {
	for {
		pause := e.between(300*time.Millisecond, 1200*time.Millisecond)
		if e.intn(4) == 0 {
			pause = e.between(4*time.Second, 8*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		kind := faultKinds[e.intn(len(faultKinds))]
		i := e.faultBegins(kind)
		if e.inject(ctx, kind, reg) {
			e.countFault(kind)
		}
		e.faultEnds(i)
	}
}

// inject applies one fault, holds it for a while and heals it. It reports
// whether the fault was applied.
func (e *env) inject(ctx context.Context, kind string, reg *leases) bool {
	// Faults last past the session's renewal window (TTL − margin = 1 s)
	// about half the time, so sessions are both lost and kept.
	hold := e.between(500*time.Millisecond, 2500*time.Millisecond)
	switch kind {
	case "stop-leader", "stop-follower":
		m := e.pickMember(ctx, kind == "stop-leader")
		if m == nil || m.Stop() != nil {
			return false
		}
		sleep(ctx, hold)
		e.restart(m)
	case "partition-member":
		m := e.cluster.Members()[e.intn(len(e.cluster.Members()))]
		m.Partition()
		sleep(ctx, hold)
		m.Heal()
	case "blackhole-client":
		w := e.workers[e.intn(len(e.workers))]
		for _, p := range w.proxies {
			p.Blackhole()
		}
		sleep(ctx, hold)
		for _, p := range w.proxies {
			p.Pass()
		}
	case "delay-client":
		w := e.workers[e.intn(len(e.workers))]
		d := e.between(5*time.Millisecond, 100*time.Millisecond)
		for _, p := range w.proxies {
			p.SetDelay(d)
		}
		sleep(ctx, hold)
		for _, p := range w.proxies {
			p.SetDelay(0)
		}
	case "compact":
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := e.observer.Get(cctx, "compact-probe")
		if err != nil {
			return false
		}
		// Not past what the history has read: the observer's watch must
		// not lose events, only the workers' watches are the target.
		rev := resp.Header.Revision
		if e.hist != nil {
			rev = min(rev, e.hist.progress())
		}
		if rev <= 1 {
			return false
		}
		if _, err := e.observer.Compact(cctx, rev); err != nil {
			return false
		}
	case "reply-lost":
		// Any of the worker's next few writes: a lock's enqueue, a claim,
		// an unlock, a registration, a cleanup.
		w := e.workers[e.intn(len(e.workers))]
		before := w.loser.Lost()
		for range 1 + e.intn(3) {
			w.loser.Next("Txn", testutil.TxnWrites(), nil)
		}
		sleep(ctx, hold)
		w.loser.Clear()
		return w.loser.Lost() > before
	case "cleanup-outage":
		// Longer than a cleanup may take (so cancelled calls leave keys
		// for the session to delete), shorter than the session's TTL
		// less its margin and one renewal interval (so the session
		// survives and its keys would stay).
		var long []*worker
		for _, w := range e.workers {
			if w.ttl == longTTL {
				long = append(long, w)
			}
		}
		if len(long) == 0 {
			return false
		}
		w := long[e.intn(len(long))]
		for _, p := range w.proxies {
			p.Blackhole()
		}
		sleep(ctx, e.between(retry.CleanupTimeout+time.Second, retry.CleanupTimeout+2*time.Second))
		for _, p := range w.proxies {
			p.Pass()
		}
	case "revoke-lease":
		lease, ok := reg.pick(e.intn(1 << 30))
		if !ok {
			return false
		}
		at := e.now()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := e.observer.Revoke(rctx, lease); err != nil {
			return false
		}
		e.faultsMu.Lock()
		e.revoked = append(e.revoked, revocation{lease: lease, at: at})
		e.faultsMu.Unlock()
	}
	return true
}

func (e *env) pickMember(ctx context.Context, leader bool) *embedded.Member {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.cluster.WaitLeader(wctx)
	if err != nil {
		return nil
	}
	if leader {
		return l
	}
	var followers []*embedded.Member
	for _, m := range e.cluster.Members() {
		if m != l {
			followers = append(followers, m)
		}
	}
	return followers[e.intn(len(followers))]
}

// restart brings a stopped member back; the cluster must not stay short of
// a member, so it insists beyond the workload's deadline.
func (e *env) restart(m *embedded.Member) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Restart(ctx); err != nil {
		e.t.Errorf("restart %s: %v", m.Name(), err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
