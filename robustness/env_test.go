package robustness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

var (
	duration = flag.Duration("robust.duration", 15*time.Second, "how long each workload runs under faults")
	seed     = flag.Uint64("robust.seed", 0, "random seed for the fault schedule (0: derived from the clock; printed)")
)

// sessionTTL is short so that lost sessions, and their recovery, happen
// many times within a run. Half the workers use longTTL instead: long
// enough that their session outlives a cleanup outage (see nemesis).
const (
	sessionTTL = 2 * time.Second
	longTTL    = 12 * time.Second
)

// env is a 3-member embedded cluster and the clients of one workload. Each
// worker's client reaches every member through its own fault proxies, so a
// worker can be cut off (blackholed, delayed) on its own, and fails over
// to another member when one stops, as a production client would.
type env struct {
	t        *testing.T
	cluster  *embedded.Cluster
	observer *clientv3.Client // never faulted: for checks and for faults themselves
	workers  []*worker
	start    time.Time

	seed  uint64
	rngMu sync.Mutex
	rng   *rand.Rand

	faultsMu sync.Mutex
	faults   map[string]int
	revoked  []revocation
	unwell   []span // when faults were active, or the probe found the cluster slow
	hist     *history

	ops atomic.Int64 // primitive calls that returned

	progressMu sync.Mutex
	progress   map[string]*tracker
	hangs      []string
}

// worker is one client process of a workload.
type worker struct {
	id      int
	ttl     time.Duration // of its sessions
	cli     *clientv3.Client
	proxies []*faultproxy.Proxy  // one per member
	loser   *testutil.ReplyLoser // loses answers to its requests
}

// revocation records a lease revoked by the nemesis: everything it owned
// ended then, whatever its holder believed.
type revocation struct {
	lease clientv3.LeaseID
	at    time.Duration // since env start
}

func newEnv(t *testing.T, workers int) *env {
	t.Helper()
	ctx := testutil.Context(t, 2*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync(), embedded.WithLogger(zap.NewNop()))
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	obs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("fault schedule seed %d (rerun with -robust.seed=%d)", s, s)
	e := &env{
		t:        t,
		cluster:  c,
		observer: obs,
		seed:     s,
		rng:      rand.New(rand.NewPCG(s, s>>1)),
		faults:   map[string]int{},
		progress: map[string]*tracker{},
		start:    time.Now(),
	}
	for i := range workers {
		e.workers = append(e.workers, e.newWorker(i))
	}
	return e
}

func (e *env) newWorker(id int) *worker {
	e.t.Helper()
	w := &worker{id: id, ttl: sessionTTL, loser: &testutil.ReplyLoser{}}
	if id%2 == 1 {
		w.ttl = longTTL
	}
	var eps []string
	for _, m := range e.cluster.Members() {
		p, err := faultproxy.New("127.0.0.1:0", strings.TrimPrefix(m.Endpoint(), "http://"))
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { p.Close() })
		w.proxies = append(w.proxies, p)
		eps = append(eps, "http://"+p.Addr())
	}
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	}
	w.loser.Lose(&cfg)
	cli, err := clientv3.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	w.cli = cli
	return w
}

// now is the time since the env started, the clock every history uses.
func (e *env) now() time.Duration { return time.Since(e.start) }

func (e *env) intn(n int) int {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.IntN(n)
}

// between returns a random duration in [lo, hi).
func (e *env) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(e.intn(int(hi-lo)))
}

func (e *env) countFault(kind string) {
	e.faultsMu.Lock()
	e.faults[kind]++
	e.faultsMu.Unlock()
}

func (e *env) faultCount() int {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	n := 0
	for _, c := range e.faults {
		n += c
	}
	return n
}

func (e *env) faultSummary() string {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	var parts []string
	for _, k := range faultKinds {
		if c := e.faults[k]; c > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", k, c))
		}
	}
	return strings.Join(parts, ", ")
}

func (e *env) revocations() []revocation {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	return append([]revocation(nil), e.revoked...)
}

// session makes a new session for a worker, retrying through faults until
// ctx ends. Workers call it again whenever their session is lost.
func (w *worker) session(ctx context.Context, reg *leases) (*lockstep.Session, error) {
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := lockstep.NewSession(sctx, w.cli, lockstep.WithTTL(w.ttl))
		cancel()
		if err == nil {
			reg.add(s)
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sleep(ctx, time.Duration(50*(attempt%10+1))*time.Millisecond)
	}
}

// op counts one primitive call that returned, whatever its result.
func (e *env) op() { e.ops.Add(1) }

// leases is the set of live sessions, which the nemesis may revoke.
type leases struct {
	mu   sync.Mutex
	live map[clientv3.LeaseID]*lockstep.Session
}

func newLeases() *leases { return &leases{live: map[clientv3.LeaseID]*lockstep.Session{}} }

func (l *leases) add(s *lockstep.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live[s.Lease()] = s
}

func (l *leases) pick(n int) (clientv3.LeaseID, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, s := range l.live {
		if s.Err() != nil {
			delete(l.live, id)
		}
	}
	if len(l.live) == 0 {
		return 0, false
	}
	i := n % len(l.live)
	for id := range l.live {
		if i == 0 {
			return id, true
		}
		i--
	}
	return 0, false
}

// opTimeout bounds every call a worker makes: no call may hang the suite.
const opTimeout = 5 * time.Second

// bounded returns a context for one call: ended by ctx or after opTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// cleanupCtx is a bounded context for calls that must run after the
// workload's ctx ended (releasing what a worker holds).
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
}

// holdTime is how long a worker keeps what it acquired: mostly briefly,
// sometimes long enough for a fault to catch it holding.
func (e *env) holdTime() time.Duration {
	if e.intn(50) == 0 {
		return e.between(100*time.Millisecond, 800*time.Millisecond)
	}
	return e.between(0, 5*time.Millisecond)
}

// sessions is a worker's current session, replaced when it ends.
type sessions struct {
	w   *worker
	reg *leases
	s   *lockstep.Session
}

// get returns a live session, making a new one if the last one ended.
// fresh reports a new session: whatever was built on the old one must be
// built again.
func (x *sessions) get(ctx context.Context) (s *lockstep.Session, fresh bool, err error) {
	if x.s != nil && x.s.Err() == nil {
		return x.s, false, nil
	}
	x.close()
	if x.s, err = x.w.session(ctx, x.reg); err != nil {
		return nil, false, err
	}
	return x.s, true, nil
}

// failed notes a call's error: one that says the lease is gone ends the
// session here too (the session itself learns it at its next keepalive).
func (x *sessions) failed(err error) {
	if errors.Is(err, lockstep.ErrSessionLost) {
		x.close()
	}
}

// close closes the current session, which releases everything it owns.
func (x *sessions) close() {
	if x.s != nil {
		x.s.Close()
		x.s = nil
	}
}

// runTime is how long a workload runs: the nemesis for -robust.duration,
// then a calm tail in which every worker must make progress again (see
// hangAfterHeal).
func runTime() time.Duration { return *duration + hangAfterHeal + time.Second }

// runWorkers runs work once per worker until ctx ends and every worker has
// returned; the nemesis runs for the first -robust.duration of it.
func (e *env) runWorkers(ctx context.Context, reg *leases, work func(ctx context.Context, w *worker)) {
	stop := e.startNemesis(ctx, reg)
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(func() { work(ctx, w) })
	}
	<-ctx.Done()
	e.waitWorkers(&wg)
	stop()
}

// waitWorkers waits for the workers to return once their ctx has ended.
// They must, within a few bounded calls; one that does not is a hang, said
// at once (a test stuck here would otherwise only be killed by -timeout).
func (e *env) waitWorkers(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(hangWall):
	}
	msg := fmt.Sprintf("hang: workers still running %v after their ctx ended", hangWall)
	fmt.Fprintf(os.Stderr, "%s: %s\n", e.t.Name(), msg)
	e.progressMu.Lock()
	e.hangs = append(e.hangs, msg)
	e.progressMu.Unlock()
	<-done
}
