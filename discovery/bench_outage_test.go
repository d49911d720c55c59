package discovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/embedded"
)

// BenchmarkReregisterAfterOutage registers one instance of each side
// through a client that knows one member of a 3-member cluster (not the
// leader), stops that member for 3 TTLs (TTL 2 s), so that both leases
// expire and both instances vanish, and restarts it. A watcher of each
// side, on another member, records when its instance goes and when it
// comes back. etcd naming's instance is what its user writes: a lease,
// AddEndpoint, KeepAlive; nothing registers it again once the keepalive
// channel closes, so it is given up as soon as that channel has closed
// and the instance is gone, or 20 s after the restart.
//
// Figures, from the restart's return (the member serves again):
// client-back-ms, when the instances' etcd client answers again (gRPC's
// reconnect backoff); lockstep-back-ms, when lockstep's instance is
// visible again; etcd-back, 1 if etcd naming's came back, then
// etcd-back-ms. gone-ms are from the stop to the instance vanishing. The
// members run without fsync.
func BenchmarkReregisterAfterOutage(b *testing.B) {
	if testing.Short() {
		b.Skip("stops a member for several TTLs")
	}
	const ttl = 2 * time.Second
	var rs []outageResult
	for range b.N {
		rs = append(rs, outage(b, ttl))
	}
	var sum outageResult
	backs := 0
	for _, r := range rs {
		sum.clientBack += r.clientBack
		sum.lockstepBack += r.lockstepBack
		sum.lockstepGone += r.lockstepGone
		sum.etcdGone += r.etcdGone
		if r.etcdCameBack {
			backs++
			sum.etcdBack += r.etcdBack
		}
		b.Logf("outage %v, TTL %v: gone after the stop: lockstep %v, etcd naming %v; after the restart: etcd client answers %v, lockstep back %v, etcd naming %s",
			3*ttl, ttl, r.lockstepGone.Round(time.Millisecond), r.etcdGone.Round(time.Millisecond),
			r.clientBack.Round(time.Millisecond), r.lockstepBack.Round(time.Millisecond), r.etcdOutcome())
	}
	n := time.Duration(len(rs))
	b.ReportMetric(ms(sum.clientBack/n), "client-back-ms")
	b.ReportMetric(ms(sum.lockstepBack/n), "lockstep-back-ms")
	b.ReportMetric(ms(sum.lockstepGone/n), "lockstep-gone-ms")
	b.ReportMetric(ms(sum.etcdGone/n), "etcd-gone-ms")
	b.ReportMetric(float64(backs)/float64(len(rs)), "etcd-back")
	if backs > 0 {
		b.ReportMetric(ms(sum.etcdBack/time.Duration(backs)), "etcd-back-ms")
	}
}

type outageResult struct {
	clientBack, lockstepBack, etcdBack time.Duration // from the restart
	lockstepGone, etcdGone             time.Duration // from the stop
	etcdCameBack                       bool
	etcdKeepaliveEnd                   time.Duration // from the stop: etcd naming's keepalive channel closed
}

func (r outageResult) etcdOutcome() string {
	if r.etcdCameBack {
		return "back " + r.etcdBack.Round(time.Millisecond).String()
	}
	if r.etcdKeepaliveEnd == 0 {
		return "not back, its keepalive still running"
	}
	return "never back (its keepalive channel closed " + r.etcdKeepaliveEnd.Round(time.Millisecond).String() + " after the stop)"
}

// presence records when an instance is seen and when it is not.
type presence struct {
	mu      sync.Mutex
	present bool
	changes []presenceChange
}

type presenceChange struct {
	at      time.Time
	present bool
}

func (p *presence) set(present bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.changes) == 0 || p.present != present {
		p.present = present
		p.changes = append(p.changes, presenceChange{time.Now(), present})
	}
}

// since returns the first time after t that the instance's presence was
// present, if any.
func (p *presence) since(t time.Time, present bool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.changes {
		if c.at.After(t) && c.present == present {
			return c.at, true
		}
	}
	return time.Time{}, false
}

func (p *presence) is() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.present
}

func outage(b *testing.B, ttl time.Duration) outageResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync(), embedded.WithLogger(zap.NewNop()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var down, up *embedded.Member // the instances' member and the watchers'
	for _, m := range c.Members() {
		switch {
		case m == leader:
		case down == nil:
			down = m
		default:
			up = m
		}
	}
	regCli, err := down.Client()
	if err != nil {
		b.Fatal(err)
	}
	watchCli, err := up.Client()
	if err != nil {
		b.Fatal(err)
	}
	const prefix = "/bench/outage"
	addr := "127.0.0.1:50051" // watched, never called

	// lockstep's instance and its watcher.
	r, err := discovery.Register(ctx, regCli, prefix, discovery.Instance{Service: "lockstep", ID: "i", Addr: addr},
		discovery.WithTTL(ttl), discovery.WithGrace(0))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Close(cctx)
	}()
	w, err := discovery.Watch(ctx, watchCli, prefix, "lockstep")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var ours, theirs presence
	var readers sync.WaitGroup
	wctx, stopWatching := context.WithCancel(ctx)
	defer readers.Wait()
	defer stopWatching()
	readers.Go(func() {
		for list := range w.Updates(wctx) {
			_, ok := find(list, "i")
			ours.set(ok)
		}
	})

	// etcd naming's instance and its watcher.
	m, err := registerWithManager(ctx, regCli, prefix, discovery.Instance{Service: "etcd", ID: "i", Addr: addr}, ttl)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.close(cctx)
	}()
	em, err := endpoints.NewManager(watchCli, prefix+"/etcd")
	if err != nil {
		b.Fatal(err)
	}
	wch, err := em.NewWatchChannel(wctx)
	if err != nil {
		b.Fatal(err)
	}
	readers.Go(func() {
		set := map[string]bool{}
		for ups := range wch {
			for _, up := range ups {
				switch up.Op {
				case endpoints.Add:
					set[up.Key] = true
				case endpoints.Delete:
					delete(set, up.Key)
				}
			}
			theirs.set(set[m.key])
		}
	})

	for !ours.is() || !theirs.is() {
		if !pause(ctx, 10*time.Millisecond) {
			b.Fatal("the instances were never seen")
		}
	}

	stopped := time.Now()
	if err := down.Stop(); err != nil {
		b.Fatal(err)
	}
	if !pause(ctx, 3*ttl) {
		b.Fatal(ctx.Err())
	}
	if err := down.Restart(ctx); err != nil {
		b.Fatal(err)
	}
	restarted := time.Now()
	var res outageResult
	for {
		gctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := regCli.Get(gctx, "probe", clientv3.WithSerializable())
		cancel()
		if err == nil {
			res.clientBack = time.Since(restarted)
			break
		}
		if !pause(ctx, 20*time.Millisecond) {
			b.Fatal("the instances' client never answered again")
		}
	}

	// Until lockstep's instance is back, and etcd naming's is back too or
	// can no longer be: its keepalive channel has closed and it is gone.
	const window = 20 * time.Second
	for time.Since(restarted) < window && pause(ctx, 10*time.Millisecond) {
		_, back := ours.since(restarted, true)
		_, theirsBack := theirs.since(restarted, true)
		select {
		case <-m.kaDone:
			theirsBack = theirsBack || !theirs.is()
		default:
		}
		if back && theirsBack {
			break
		}
	}
	ourBack, ok := ours.since(restarted, true)
	if !ok {
		b.Errorf("lockstep's instance was not visible again %v after the restart (registered: %s)", window, fmtRegistered(r))
	}
	res.lockstepBack = ourBack.Sub(restarted)
	if t, ok := theirs.since(restarted, true); ok {
		res.etcdCameBack, res.etcdBack = true, t.Sub(restarted)
	}
	if end := m.kaEnd.Load(); end != 0 {
		res.etcdKeepaliveEnd = time.Unix(0, end).Sub(stopped)
	}
	if t, ok := ours.since(stopped, false); ok {
		res.lockstepGone = t.Sub(stopped)
	}
	if t, ok := theirs.since(stopped, false); ok {
		res.etcdGone = t.Sub(stopped)
	}
	return res
}

func fmtRegistered(r *discovery.Registration) string {
	ok, err := r.Registered()
	if ok {
		return "yes"
	}
	return "no: " + err.Error()
}
