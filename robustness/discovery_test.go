package robustness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/retry"
)

const (
	discoveryRegistrars = 5
	discoveryWatchers   = 3
	// discoveryCatchUp: the registrars stop updating this long before the
	// end, so that the watchers' last lists can be held to etcd's last
	// state.
	discoveryCatchUp = 3 * time.Second
	// discoveryAppear bounds how long after the last fault healed (or
	// after its registration, if later) a live instance may take to show
	// in every watcher. Its key may be gone: a session cut off in the
	// last fault ends at its TTL less the margin (12 s at most), and the
	// registration writes the key again after one backoff (5 s at most);
	// the watchers' caches resume within a list and a watch.
	discoveryAppear = hangAfterHeal
	// discoveryLateWrite is how long after its registration ended (Close
	// returned, or its process was killed) a write of it may still be
	// seen in etcd's history: a request held by a member fault, and the
	// observer's own lag.
	discoveryLateWrite = memberFaultReach + settle
)

// discoveryServices are the services registered: registrars 0–2 register
// instances of alpha, 3–4 of beta.
var discoveryServices = []string{"alpha", "beta"}

func discoveryService(registrar int) string {
	if registrar < 3 {
		return "alpha"
	}
	return "beta"
}

// discoveryPins are the workers whose client talks to one member only (by
// index): a stop or a partition of that member cuts them off, as it would
// a process configured with one endpoint. The others fail over.
var discoveryPins = map[int]int{2: 1, 3: 2, 7: 0}

// What becomes of each registrar when the faults stop.
const (
	fateAlive  = "alive"  // registered until the end
	fateKilled = "killed" // its process crashes and is not restarted
	fateClosed = "closed" // its registration is closed cleanly, not registered again
)

// TestRobustDiscovery runs five registrars, each keeping one instance of
// a service (alpha or beta) registered with discovery.Register, and three
// watchers, each following both services with discovery.Watch, under the
// nemesis. A registrar updates its instance's weight every few tens of
// milliseconds; after a random lifetime it crashes (its etcd client is
// closed without deregistering, and a new process registers the same ID
// again: Register waits for the crashed one's lease to expire), closes
// its registration cleanly and registers again, drains or undrains, or
// has its lease revoked from outside. Two registrars and one watcher
// talk to a single member. When the faults stop, one registrar is killed
// for good, one closed for good, and the others stay registered to the
// end. Checks:
//
//   - every list a watcher reported is exactly what etcd held for the
//     service at the list's revision (keys, revisions, leases, addresses,
//     weights, statuses): never an instance that was not registered then,
//     never a deleted one; every list its Updates channel gave was held
//     by etcd at some revision it could have reflected;
//   - every write under the prefix was made under a lease granted to a
//     registration of that instance ID, with that ID's address, no later
//     than shortly after that registration ended, and never over the key
//     of another registration's live lease;
//   - no key is ever written without a lease: neither in etcd's history
//     from the first revision nor in a scan at the end;
//   - a watcher's revisions never go back;
//   - after the faults stop, every live registrar's instance shows in
//     every watcher of its service within discoveryAppear and stays; the
//     killed and closed ones are gone from etcd and from every watcher by
//     the end; every watcher reflects the last change to its service.
//
// The registrations' leases are internal to discovery, so the nemesis's
// revoke-lease fault finds none; the registrars revoke their own current
// lease from outside instead (through the observer), and those
// revocations are counted as revoke-lease faults.
func TestRobustDiscovery(t *testing.T) {
	const (
		prefix = "/robust/discovery/"
		svcs   = prefix + "svc" // discovery's prefix
	)
	e := newEnv(t, discoveryRegistrars+discoveryWatchers)
	rec := newDiscoveryRecords(svcs + "/")
	regs := e.newRegistrars(svcs, rec)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases() // stays empty: see above
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	// At the end, before the live registrations are closed, etcd is
	// scanned: the registrars wait for it.
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		<-ctx.Done()
		rec.finish(e)
	}()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		if w.id < discoveryRegistrars {
			regs[w.id].run(ctx, scanned)
		} else {
			e.discoveryWatcher(ctx, w, svcs, rec)
		}
	})
	<-scanned
	stopWatchdog()
	stopHistory()

	healed, _ := e.lastHeal()
	e.judge(t, "discovery", hist, func(cs []change) ([]string, string) {
		return rec.check(cs, healed, e.faultsIn)
	})
}

// regLife is one Register call and, if it succeeded, the registration it
// returned: from the call until Close returned, the process was killed,
// or the call failed.
type regLife struct {
	id         string
	start      time.Duration
	registered time.Duration // when Register returned it; 0 if it failed
	end        time.Duration // 0 while open
	how        string        // "failed", "killed", "closed", or "open" (still at the end)
	leases     []clientv3.LeaseID
	lease      clientv3.LeaseID // the lease of its last registration (OnChange)
	losses     int              // registrations lost (OnChange), not counting its kill
	killing    bool             // its process is being killed: the loss that follows is not counted
	// Of a clean Close: whether the instance was registered when it was
	// called, and what it returned.
	closeRegistered bool
	closeErr        error
	closeStart      time.Duration
	closeOverran    time.Duration // how long after its ctx's deadline Close returned, if over 0.1 s

	reg   *discovery.Registration
	until time.Duration // when its registrar acts next
}

// seenList is one list a watcher reported.
type seenList struct {
	watcher string
	service string
	gen     int // which Watch of that watcher
	at      time.Duration
	// exact: rev is the revision list reflects, read before and after
	// it. Otherwise list came from Updates and rev was read after it: an
	// upper bound.
	exact bool
	rev   int64
	list  []discovery.Instance
}

// scannedKey is a key under the prefix at the end.
type scannedKey struct {
	key   string
	lease clientv3.LeaseID
}

type discoveryRecords struct {
	dir string

	mu           sync.Mutex
	cur          map[int]*regLife // each registrar's life being run, for the lease grants
	lives        []*regLife
	byLease      map[clientv3.LeaseID]*regLife
	unattributed int // leases granted outside any life
	seen         []seenList
	fates        map[string]string // instance ID → its fate when the faults stop
	addrs        map[string]string
	services     map[string]string
	ttls         map[string]time.Duration
	watchers     map[string]string // watcher → service
	reopened     int
	updates      int
	updated      int
	revoked      int
	failures     []string // the workload could not run as planned

	end     time.Duration // when the run ended and etcd was scanned
	scan    []scannedKey
	scanRev int64
	scanErr error
}

func newDiscoveryRecords(dir string) *discoveryRecords {
	return &discoveryRecords{
		dir: dir, cur: map[int]*regLife{}, byLease: map[clientv3.LeaseID]*regLife{},
		fates: map[string]string{}, addrs: map[string]string{}, services: map[string]string{},
		ttls: map[string]time.Duration{}, watchers: map[string]string{},
	}
}

func (rec *discoveryRecords) fail(format string, args ...any) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.failures = append(rec.failures, fmt.Sprintf(format, args...))
}

// registrar is one process that keeps one instance registered, killed
// and started again during the run.
type registrar struct {
	e      *env
	w      *worker
	rec    *discoveryRecords
	prefix string
	name   string // its progress tracker
	in     discovery.Instance
	pin    int // the member its client talks to; -1: every member
	fate   string
	seq    int
	drain  bool // draining now
}

func (e *env) newRegistrars(prefix string, rec *discoveryRecords) []*registrar {
	// One registrar is killed for good when the faults stop and one
	// closed for good, leaving each service at least one live instance.
	killed := e.intn(discoveryRegistrars)
	closed := killed
	for closed == killed || (discoveryService(closed) == "beta" && discoveryService(killed) == "beta") {
		closed = e.intn(discoveryRegistrars)
	}
	var regs []*registrar
	for _, w := range e.workers[:discoveryRegistrars] {
		r := &registrar{
			e: e, w: w, rec: rec, prefix: prefix,
			name: fmt.Sprintf("discovery registrar %d", w.id),
			in: discovery.Instance{Service: discoveryService(w.id), ID: fmt.Sprintf("r%d", w.id),
				Addr: fmt.Sprintf("127.0.0.1:%d", 20000+w.id), Weight: 1},
			pin:  -1,
			fate: fateAlive,
		}
		if m, ok := discoveryPins[w.id]; ok {
			r.pin = m
		}
		switch w.id {
		case killed:
			r.fate = fateKilled
		case closed:
			r.fate = fateClosed
		}
		rec.fates[r.in.ID] = r.fate
		rec.addrs[r.in.ID] = r.in.Addr
		rec.services[r.in.ID] = r.in.Service
		rec.ttls[r.in.ID] = w.ttl
		regs = append(regs, r)
	}
	return regs
}

// dial makes a client of w through its fault proxies (one member's, if
// pin is not negative) and its reply loser, as newWorker does.
func (e *env) dial(w *worker, pin int, intercept grpc.UnaryClientInterceptor) (*clientv3.Client, error) {
	var eps []string
	for i, p := range w.proxies {
		if pin < 0 || i == pin {
			eps = append(eps, "http://"+p.Addr())
		}
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	w.loser.Lose(&cfg)
	if intercept != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(intercept))
	}
	return clientv3.New(cfg)
}

// grants records every lease etcd granted to the registrar's client, for
// the life being run: the writes under the prefix are then traced to the
// registration that made them.
func (r *registrar) grants(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if g, ok := reply.(*pb.LeaseGrantResponse); ok && err == nil && g.ID != 0 {
		r.rec.granted(r.w.id, clientv3.LeaseID(g.ID))
	}
	return err
}

func (rec *discoveryRecords) granted(registrar int, lease clientv3.LeaseID) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	life := rec.cur[registrar]
	if life == nil {
		rec.unattributed++
		return
	}
	life.leases = append(life.leases, lease)
	rec.byLease[lease] = life
}

func (rec *discoveryRecords) begin(registrar int, id string, at time.Duration) *regLife {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	life := &regLife{id: id, start: at}
	rec.cur[registrar] = life
	rec.lives = append(rec.lives, life)
	return life
}

// ended closes a life; no lease can be granted to it after this (its
// registration's goroutine has stopped, or its client is closed).
func (rec *discoveryRecords) ended(registrar int, life *regLife, how string, at time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	life.how, life.end = how, at
	if rec.cur[registrar] == life {
		delete(rec.cur, registrar)
	}
}

func (rec *discoveryRecords) changed(life *regLife, ev discovery.Event) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	switch {
	case ev.Registered:
		life.lease = ev.Lease
	case !life.killing:
		life.losses++
	}
}

// run is the registrar's processes, one after another, until ctx ends;
// then, once etcd was scanned, it closes the registration it holds.
func (r *registrar) run(ctx context.Context, scanned <-chan struct{}) {
	e := r.e
	e.track(r.name)
	defer e.untrack(r.name)
	updateUntil := runTime() - discoveryCatchUp
	var (
		cli  *clientv3.Client
		life *regLife
	)
	defer func() {
		if life != nil {
			<-scanned
			cctx, cancel := cleanupCtx(ctx)
			r.closeLife(cctx, life, "open")
			cancel()
		}
		if cli != nil {
			cli.Close()
		}
	}()
	for ctx.Err() == nil {
		if cli == nil { // a new process
			c, err := e.dial(r.w, r.pin, r.grants)
			if err != nil {
				r.rec.fail("registrar %d: new client: %v", r.w.id, err)
				return
			}
			cli = c
		}
		calm := e.now() >= *duration
		if calm && r.fate != fateAlive {
			if life != nil {
				if r.fate == fateKilled {
					r.kill(cli, life)
					cli = nil
				} else {
					r.close(ctx, life)
				}
				life = nil
			}
			e.untrack(r.name)
			return
		}
		if life == nil {
			life = r.register(ctx, cli)
			continue
		}
		if calm || e.now() < life.until {
			if e.now() < updateUntil {
				r.update(ctx, life)
			} else {
				sleep(ctx, 100*time.Millisecond)
			}
			continue
		}
		life.until = e.now() + e.between(500*time.Millisecond, 4*time.Second)
		switch n := e.intn(20); {
		case n < 7: // the process crashes; a new one starts
			r.kill(cli, life)
			cli, life = nil, nil
			sleep(ctx, e.between(0, time.Second))
		case n < 12:
			r.close(ctx, life)
			life = nil
			sleep(ctx, e.between(0, 500*time.Millisecond))
		case n < 14:
			r.revoke(life)
		default:
			r.toggleDrain(ctx, life)
		}
	}
}

// register makes one Register call; it returns the life it started, or
// nil if the call failed.
func (r *registrar) register(ctx context.Context, cli *clientv3.Client) *regLife {
	e := r.e
	life := r.rec.begin(r.w.id, r.in.ID, e.now())
	grace := time.Duration(0)
	if e.intn(2) == 0 {
		grace = e.between(50*time.Millisecond, 300*time.Millisecond)
	}
	r.drain = false
	rctx, cancel := bounded(ctx)
	reg, err := discovery.Register(rctx, cli, r.prefix, r.in,
		discovery.WithTTL(r.w.ttl), discovery.WithGrace(grace),
		discovery.WithOnChange(func(ev discovery.Event) { r.rec.changed(life, ev) }))
	cancel()
	e.op()
	if err != nil {
		r.rec.ended(r.w.id, life, "failed", e.now())
		// Waiting for a crashed process's lease to expire is what a
		// restarted one must do: progress.
		if errors.Is(err, discovery.ErrIDInUse) {
			e.progressed(r.name)
		}
		sleep(ctx, e.between(10*time.Millisecond, 100*time.Millisecond))
		return nil
	}
	e.progressed(r.name)
	life.reg = reg
	life.registered = e.now()
	life.until = e.now() + e.between(500*time.Millisecond, 4*time.Second)
	return life
}

func (r *registrar) update(ctx context.Context, life *regLife) {
	e := r.e
	sleep(ctx, e.between(20*time.Millisecond, 200*time.Millisecond))
	if ctx.Err() != nil {
		return
	}
	r.seq++
	weight := 1 + r.seq%5
	uctx, cancel := bounded(ctx)
	err := life.reg.Update(uctx, func(in *discovery.Instance) { in.Weight = weight })
	cancel()
	e.op()
	r.rec.mu.Lock()
	r.rec.updates++
	if err == nil {
		r.rec.updated++
	}
	r.rec.mu.Unlock()
	if err == nil {
		e.progressed(r.name)
	}
}

// kill crashes the process: its client is closed first, so nothing the
// registration does afterwards reaches etcd, and its key stays until its
// lease expires. Close, with a ctx that has ended, only stops the
// registration's goroutines, as the process's death would: its revoke
// cannot go through the closed client.
func (r *registrar) kill(cli *clientv3.Client, life *regLife) {
	r.rec.mu.Lock()
	life.killing = true
	r.rec.mu.Unlock()
	cli.Close()
	at := r.e.now()
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	life.reg.Close(dead)
	r.rec.ended(r.w.id, life, "killed", at)
	r.e.progressed(r.name)
}

func (r *registrar) close(ctx context.Context, life *regLife) {
	cctx, cancel := bounded(ctx)
	r.closeLife(cctx, life, "closed")
	cancel()
	r.e.progressed(r.name)
}

// closeLife closes the registration cleanly under cctx, and records how
// it went.
func (r *registrar) closeLife(cctx context.Context, life *regLife, how string) {
	registered, _ := life.reg.Registered()
	start := r.e.now()
	deadline, _ := cctx.Deadline()
	err := life.reg.Close(cctx)
	overran := time.Since(deadline)
	r.e.op()
	r.rec.mu.Lock()
	life.closeRegistered, life.closeErr, life.closeStart = registered, err, start
	if overran > 100*time.Millisecond {
		life.closeOverran = overran
	}
	r.rec.mu.Unlock()
	r.rec.ended(r.w.id, life, how, r.e.now())
}

// revoke revokes the registration's current lease from outside, as an
// operator or a lease-hungry tool might.
func (r *registrar) revoke(life *regLife) {
	e := r.e
	r.rec.mu.Lock()
	lease := life.lease
	r.rec.mu.Unlock()
	if lease == 0 {
		return
	}
	i := e.faultBegins("revoke-lease")
	defer e.faultEnds(i)
	at := e.now()
	rctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := e.observer.Revoke(rctx, lease); err != nil {
		return
	}
	e.countFault("revoke-lease")
	e.faultsMu.Lock()
	e.revoked = append(e.revoked, revocation{lease: lease, at: at})
	e.faultsMu.Unlock()
	r.rec.mu.Lock()
	r.rec.revoked++
	r.rec.mu.Unlock()
}

func (r *registrar) toggleDrain(ctx context.Context, life *regLife) {
	e := r.e
	dctx, cancel := bounded(ctx)
	defer cancel()
	var err error
	if r.drain {
		err = life.reg.Update(dctx, func(in *discovery.Instance) { in.Status = discovery.Serving })
	} else {
		err = life.reg.Drain(dctx)
	}
	e.op()
	r.drain = !r.drain // the change is kept even if the call timed out
	if err == nil {
		e.progressed(r.name)
	}
}

// discoveryWatcher follows both services on one client: one Watch each,
// sharing the client's cache.
func (e *env) discoveryWatcher(ctx context.Context, w *worker, prefix string, rec *discoveryRecords) {
	cli := w.cli
	if m, ok := discoveryPins[w.id]; ok {
		c, err := e.dial(w, m, nil)
		if err != nil {
			rec.fail("watcher %d: new client: %v", w.id, err)
			return
		}
		defer c.Close()
		cli = c
	}
	var wg sync.WaitGroup
	for _, svc := range discoveryServices {
		name := fmt.Sprintf("discovery watcher %d (%s)", w.id, svc)
		rec.mu.Lock()
		rec.watchers[name] = svc
		rec.mu.Unlock()
		wg.Go(func() { e.watchService(ctx, cli, prefix, svc, name, rec) })
	}
	wg.Wait()
}

// watchService watches one service until ctx ends, and watches again if
// the Watcher stops.
func (e *env) watchService(ctx context.Context, cli *clientv3.Client, prefix, svc, name string, rec *discoveryRecords) {
	e.track(name)
	defer e.untrack(name)
	for gen := 0; ctx.Err() == nil; gen++ {
		octx, cancel := bounded(ctx)
		wt, err := discovery.Watch(octx, cli, prefix, svc)
		cancel()
		e.op()
		if err != nil {
			sleep(ctx, e.between(10*time.Millisecond, 100*time.Millisecond))
			continue
		}
		if gen > 0 {
			rec.mu.Lock()
			rec.reopened++
			rec.mu.Unlock()
		}
		e.progressed(name)
		e.followWatcher(ctx, wt, svc, name, gen, rec)
		wt.Close()
	}
}

// followWatcher records every list wt's Updates gives, and with it (and
// whenever wt's revision moves) the list and revision read together: the
// revision read before and after the list, retried until both agree.
func (e *env) followWatcher(ctx context.Context, wt *discovery.Watcher, svc, name string, gen int, rec *discoveryRecords) {
	updates := wt.Updates(ctx)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := int64(-1)
	exact := func() {
		for {
			before := wt.Revision()
			list := wt.Instances()
			if wt.Revision() != before {
				continue
			}
			if before != last {
				e.progressed(name)
				rec.saw(e.now(), seenList{watcher: name, service: svc, gen: gen, exact: true, rev: before, list: list})
				last = before
			}
			return
		}
	}
	for {
		select {
		case list, ok := <-updates:
			if !ok {
				return
			}
			e.op()
			rec.saw(e.now(), seenList{watcher: name, service: svc, gen: gen, rev: wt.Revision(), list: list})
			exact()
		case <-tick.C:
			exact()
		}
	}
}

func (rec *discoveryRecords) saw(at time.Duration, s seenList) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s.at = at
	rec.seen = append(rec.seen, s)
}

// finish scans the prefix at the end, while the live registrations are
// still open.
func (rec *discoveryRecords) finish(e *env) {
	end := e.now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		resp *clientv3.GetResponse
		err  error
	)
	for {
		resp, err = e.observer.Get(ctx, rec.dir, clientv3.WithPrefix())
		if err == nil || ctx.Err() != nil {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.end = end
	if err != nil {
		rec.scanErr = err
		return
	}
	rec.scanRev = resp.Header.Revision
	for _, kv := range resp.Kvs {
		rec.scan = append(rec.scan, scannedKey{string(kv.Key), clientv3.LeaseID(kv.Lease)})
	}
}

// namingValue is what discovery writes: etcd naming's JSON, lockstep's
// fields in Metadata.
type namingValue struct {
	Op       int
	Addr     string
	Metadata struct {
		ID     string `json:"id"`
		Weight int    `json:"weight"`
		Status string `json:"status"`
	}
}

func decodeNaming(v string) (namingValue, bool) {
	var n namingValue
	if err := json.Unmarshal([]byte(v), &n); err != nil || n.Op != 0 {
		return n, false
	}
	if n.Metadata.Status == "" {
		n.Metadata.Status = string(discovery.Serving)
	}
	return n, true
}

// serviceState is what etcd held for one service after a revision: each
// instance ID's put.
type serviceState struct {
	rev  int64
	puts map[string]change
}

// check judges what the watchers saw and the registrars wrote against
// etcd's history. healed is when the last fault healed; faultsIn, if not
// nil, describes the faults active in a span, for the notes.
func (rec *discoveryRecords) check(cs []change, healed time.Duration, faultsIn func(from, to time.Duration) string) (violations []string, notes string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	const most = 40 // violations written out; the rest are counted
	extra := 0
	bad := func(format string, args ...any) {
		if len(violations) >= most {
			extra++
			return
		}
		violations = append(violations, fmt.Sprintf(format, args...))
	}
	defer func() {
		if extra > 0 {
			violations = append(violations, fmt.Sprintf("and %d more violations", extra))
		}
	}()
	for _, f := range rec.failures {
		bad("%s", f)
	}

	// etcd's history: every write under the prefix, replayed by service.
	states := map[string][]serviceState{}
	cur := map[string]map[string]change{}
	for _, svc := range discoveryServices {
		cur[svc] = map[string]change{}
	}
	live := map[string]change{} // key → its put
	lastChange := map[string]int64{}
	puts, late := 0, 0
	outlived := map[*regLife]time.Duration{} // a closed registration's key, after Close returned
	deleted := map[string]time.Duration{}    // instance ID → when the observer saw its key deleted for the last time
	for _, txn := range revisions(cs) {
		touched := map[string]bool{}
		for _, c := range txn {
			if !strings.HasPrefix(c.key, rec.dir) {
				continue
			}
			svc, id, _ := strings.Cut(c.key[len(rec.dir):], "/")
			if rec.services[id] != svc {
				bad("unexpected key %s written at revision %d", c.key, c.rev)
				continue
			}
			touched[svc] = true
			if rec.scanRev == 0 || c.rev <= rec.scanRev {
				lastChange[svc] = c.rev
			}
			if c.del {
				if life := rec.byLease[c.lease]; life != nil && life.how == "closed" {
					outlived[life] = c.seen - life.end
				}
				delete(cur[svc], id)
				delete(live, c.key)
				deleted[id] = c.seen
				continue
			}
			puts++
			if rec.checkPut(c, id, live, bad) {
				late++
			}
			live[c.key] = c
			cur[svc][id] = c
			delete(deleted, id)
		}
		for svc := range touched {
			states[svc] = append(states[svc], serviceState{txn[0].rev, maps.Clone(cur[svc])})
		}
	}
	// at is the state of svc after revision rev, and its index in states
	// (-1: before the first write).
	at := func(svc string, rev int64) (map[string]change, int) {
		sts := states[svc]
		i := sort.Search(len(sts), func(i int) bool { return sts[i].rev > rev }) - 1
		if i < 0 {
			return nil, -1
		}
		return sts[i].puts, i
	}

	// The watchers' lists.
	type watch struct {
		name string
		gen  int
	}
	lastRev := map[watch]int64{}
	exact := map[string][]*seenList{} // by watcher, in time order
	lists := 0
	for i := range rec.seen {
		s := &rec.seen[i]
		if !s.exact {
			lists++
			// It was held at some revision from its newest instance's
			// to the revision read after it.
			lo := int64(0)
			for _, in := range s.list {
				lo = max(lo, in.Revision)
			}
			want, j := at(s.service, lo)
			diff := differs(s.list, want)
			for j++; diff != "" && j < len(states[s.service]) && states[s.service][j].rev <= s.rev; j++ {
				diff = differs(s.list, states[s.service][j].puts)
			}
			if diff != "" {
				bad("%s: Updates gave %s, which etcd never held between revisions %d and %d (%s)",
					s.watcher, describe(s.list), lo, s.rev, diff)
			}
			continue
		}
		k := watch{s.watcher, s.gen}
		if s.rev < lastRev[k] {
			bad("%s went back from revision %d to %d", s.watcher, lastRev[k], s.rev)
		}
		lastRev[k] = s.rev
		exact[s.watcher] = append(exact[s.watcher], s)
		want, _ := at(s.service, s.rev)
		if diff := differs(s.list, want); diff != "" {
			bad("%s reported %s at revision %d; etcd held %s: %s", s.watcher, describe(s.list), s.rev, describePuts(want), diff)
		}
	}

	// How long after Register returned every watcher reflected the
	// registration's first write: a figure, not a check (faults delay it).
	firstRev := map[*regLife]int64{}
	for _, c := range cs {
		if life := rec.byLease[c.lease]; life != nil && !c.del && strings.HasPrefix(c.key, rec.dir) {
			if _, ok := firstRev[life]; !ok {
				firstRev[life] = c.rev
			}
		}
	}
	var shown []time.Duration
	for _, life := range rec.lives {
		first, ok := firstRev[life]
		if life.registered == 0 || !ok {
			continue
		}
		for name, svc := range rec.watchers {
			ss := exact[name]
			if svc != rec.services[life.id] {
				continue
			}
			if i := sort.Search(len(ss), func(i int) bool { return ss[i].rev >= first }); i < len(ss) {
				shown = append(shown, max(0, ss[i].at-life.registered))
			}
		}
	}
	slices.Sort(shown)
	shownP50, shownMax := time.Duration(0), time.Duration(0)
	if len(shown) > 0 {
		shownP50, shownMax = shown[len(shown)/2], shown[len(shown)-1]
	}

	// The end: etcd's keys, then every watcher against each registrar's
	// fate.
	if rec.scanErr != nil {
		bad("scan at the end: %v", rec.scanErr)
	}
	inScan := map[string]scannedKey{}
	for _, k := range rec.scan {
		id := k.key[strings.LastIndex(k.key, "/")+1:]
		inScan[id] = k
		switch life := rec.byLease[k.lease]; {
		case k.lease == 0:
			bad("at the end, %s has no lease", k.key)
		case life == nil || life.id != id:
			bad("at the end, %s is under lease %x, which no registration of %s was granted", k.key, int64(k.lease), id)
		}
	}
	lastLife := map[string]*regLife{}
	for _, l := range rec.lives {
		lastLife[l.id] = l
	}
	var appear time.Duration
	gone := map[string]time.Duration{} // instance ID → when the last watcher stopped showing it
	for _, id := range slices.Sorted(maps.Keys(rec.fates)) {
		fate, svc, last := rec.fates[id], rec.services[id], lastLife[id]
		if fate == fateAlive {
			if last == nil || last.how != "open" {
				bad("registrar of %s, to stay registered, was not registered at the end", id)
				continue
			}
			if _, ok := inScan[id]; !ok {
				bad("%s, registered since %v, was not in etcd at the end", id, last.registered.Round(time.Millisecond))
			}
		} else if k, ok := inScan[id]; ok {
			bad("%s, %s when the faults stopped, was still in etcd at the end (lease %x)", id, fate, int64(k.lease))
		}
		for _, name := range slices.Sorted(maps.Keys(rec.watchers)) {
			if rec.watchers[name] != svc {
				continue
			}
			ss := exact[name]
			if len(ss) == 0 {
				bad("%s reported nothing", name)
				continue
			}
			end := ss[len(ss)-1]
			shows := func(s *seenList) bool {
				return slices.ContainsFunc(s.list, func(in discovery.Instance) bool { return in.ID == id })
			}
			if fate == fateAlive {
				ref := max(healed, last.registered)
				j := len(ss) - 1
				for j >= 0 && shows(ss[j]) {
					j--
				}
				if j == len(ss)-1 {
					bad("%s did not show %s at the end (revision %d at %v), registered since %v",
						name, id, end.rev, end.at.Round(time.Millisecond), last.registered.Round(time.Millisecond))
					continue
				}
				d := max(0, ss[j+1].at-ref)
				appear = max(appear, d)
				if d > discoveryAppear {
					bad("%s showed %s, registered and connected, only %v after the faults healed", name, id, d.Round(time.Millisecond))
				}
				continue
			}
			if shows(end) {
				bad("%s still showed %s at the end (revision %d), %s when the faults stopped", name, id, end.rev, fate)
				continue
			}
			j := len(ss) - 1
			for j >= 0 && !shows(ss[j]) {
				j--
			}
			if j >= 0 {
				gone[id] = max(gone[id], ss[j+1].at)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rec.watchers)) {
		ss := exact[name]
		if len(ss) == 0 {
			continue
		}
		if got, want := ss[len(ss)-1].rev, lastChange[rec.watchers[name]]; got < want {
			bad("%s ended at revision %d; the last change to %s was at %d", name, got, rec.watchers[name], want)
		}
	}

	kinds := map[string]int{}
	losses := 0
	for _, l := range rec.lives {
		kinds[l.how]++
		losses += l.losses
	}
	var ends []string
	for _, id := range slices.Sorted(maps.Keys(rec.fates)) {
		last := lastLife[id]
		if rec.fates[id] == fateAlive || last == nil {
			continue
		}
		ends = append(ends, fmt.Sprintf("%s (%s for good; its last registration %s at %v, TTL %v) left etcd %v and every watcher %v later",
			id, rec.fates[id], last.how, last.end.Round(time.Millisecond), rec.ttls[id],
			max(0, deleted[id]-last.end).Round(time.Millisecond), max(0, gone[id]-last.end).Round(time.Millisecond)))
	}
	notes = fmt.Sprintf("%d Register calls (%d failed: the ID still held, or faults), %d registrations: %d killed, %d closed, %d open at the end; "+
		"%d registrations lost to faults and made again, %d leases revoked from outside; %d updates (%d took effect); "+
		"%d puts in etcd's history (%d seen after their registration ended); %d lists from Updates and %d list-revision pairs "+
		"to %d watchers (%d watches made again); a watcher reflected a new registration %v after Register returned (median; at most %v); "+
		"after the faults healed a live instance showed in every watcher within %v; %s",
		len(rec.lives), kinds["failed"], len(rec.lives)-kinds["failed"], kinds["killed"], kinds["closed"], kinds["open"],
		losses, rec.revoked, rec.updates, rec.updated, puts, late, lists, len(rec.seen)-lists, len(rec.watchers), rec.reopened,
		shownP50.Round(time.Millisecond), shownMax.Round(time.Millisecond),
		appear.Round(time.Millisecond), strings.Join(ends, ", "))
	// A key that outlived a clean Close that returned nil, and whether
	// the registration was registered when Close was called.
	var keptMax time.Duration
	var keptWhy []string
	kept, keptUnregistered, closeErrs := 0, 0, 0
	for _, life := range rec.lives {
		if life.how != "closed" {
			continue
		}
		if life.closeErr != nil {
			closeErrs++
			continue
		}
		if d := outlived[life]; d > 500*time.Millisecond {
			kept++
			keptMax = max(keptMax, d)
			if !life.closeRegistered {
				keptUnregistered++
			}
			if faultsIn != nil {
				keptWhy = append(keptWhy, fmt.Sprintf("%s closed %v–%v, deleted %v later, faults: %s", life.id,
					life.closeStart.Round(time.Millisecond), life.end.Round(time.Millisecond), d.Round(time.Millisecond),
					faultsIn(life.closeStart, life.end+d)))
			}
		}
	}
	notes += fmt.Sprintf("; %d Close calls returned an error; after %d that returned nil the key stayed over 0.5 s (at most %v; %d of them called while unregistered)",
		closeErrs, kept, keptMax.Round(time.Millisecond), keptUnregistered)
	if len(keptWhy) > 0 {
		notes += " (" + strings.Join(keptWhy, "; ") + ")"
	}
	// Close is documented to give up the drain when its ctx ends and to
	// return ctx's error; only its revoke may run on, under its own bound.
	var overranMax time.Duration
	overran, overranNil := 0, 0
	for _, life := range rec.lives {
		if life.closeOverran > 0 {
			overran++
			overranMax = max(overranMax, life.closeOverran)
			if life.closeErr == nil {
				overranNil++
			}
		}
	}
	notes += fmt.Sprintf("; %d Close calls returned over 0.1 s after their ctx's deadline (at most %v after; %d of them returned nil)",
		overran, overranMax.Round(time.Millisecond), overranNil)
	if overranNil > 0 {
		violations = append(violations, fmt.Sprintf("%d Close calls returned nil after their ctx's deadline", overranNil))
	}
	if limit := retry.CleanupTimeout + time.Second; overranMax > limit {
		violations = append(violations, fmt.Sprintf("a Close returned %v after its ctx's deadline (its revoke is bounded by %v)", overranMax, retry.CleanupTimeout))
	}
	if rec.unattributed > 0 {
		notes += fmt.Sprintf("; %d leases granted outside a registration", rec.unattributed)
	}
	return violations, notes
}

// checkPut judges one put of instance id: under a lease granted to a
// registration of id, with id's address, not long after that registration
// ended, not over another registration's live key. It reports whether the
// put was seen after its registration ended.
func (rec *discoveryRecords) checkPut(c change, id string, live map[string]change, bad func(string, ...any)) (late bool) {
	if c.lease == 0 {
		bad("put of %s at revision %d without a lease", c.key, c.rev)
		return false
	}
	if v, ok := decodeNaming(c.value); !ok || v.Addr != rec.addrs[id] || v.Metadata.ID != id {
		bad("put of %s at revision %d holds %q, not instance %s at %s", c.key, c.rev, c.value, id, rec.addrs[id])
	}
	life := rec.byLease[c.lease]
	if life == nil || life.id != id {
		bad("put of %s at revision %d under lease %x, which no registration of %s was granted", c.key, c.rev, int64(c.lease), id)
		return false
	}
	if prev, ok := live[c.key]; ok && prev.lease != c.lease {
		if other := rec.byLease[prev.lease]; other != nil && other != life {
			bad("put of %s at revision %d by the registration started at %v overwrote the key of the one started at %v (lease %x, written at %d)",
				c.key, c.rev, life.start.Round(time.Millisecond), other.start.Round(time.Millisecond), int64(prev.lease), prev.rev)
		}
	}
	if life.end == 0 || c.seen <= life.end {
		return false
	}
	if c.seen > life.end+discoveryLateWrite {
		bad("put of %s at revision %d seen at %v, %v after its registration ended (%s)",
			c.key, c.rev, c.seen.Round(time.Millisecond), (c.seen - life.end).Round(time.Millisecond), life.how)
	}
	return true
}

// differs says how list differs from what etcd held (each ID's put), or
// "" if it is exactly that.
func differs(list []discovery.Instance, want map[string]change) string {
	if len(list) != len(want) {
		return fmt.Sprintf("%d instances, etcd held %d", len(list), len(want))
	}
	for _, in := range list {
		c, ok := want[in.ID]
		if !ok {
			return in.ID + " was not in etcd"
		}
		v, _ := decodeNaming(c.value)
		switch {
		case in.Key != c.key || in.Revision != c.rev || in.Lease != c.lease:
			return fmt.Sprintf("%s is %s at revision %d under lease %x; etcd held it at revision %d under lease %x",
				in.ID, in.Key, in.Revision, int64(in.Lease), c.rev, int64(c.lease))
		case in.Addr != v.Addr || in.Weight != v.Metadata.Weight || string(in.Status) != v.Metadata.Status:
			return fmt.Sprintf("%s is %s weight %d %s; etcd held %s weight %d %s",
				in.ID, in.Addr, in.Weight, in.Status, v.Addr, v.Metadata.Weight, v.Metadata.Status)
		}
	}
	return ""
}

func describe(list []discovery.Instance) string {
	var parts []string
	for _, in := range list {
		parts = append(parts, fmt.Sprintf("%s@%d", in.ID, in.Revision))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func describePuts(puts map[string]change) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(puts)) {
		parts = append(parts, fmt.Sprintf("%s@%d", id, puts[id].rev))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// The checker on made-up runs: one registrar (r0, alive to the end) and
// one watcher of its service.
func TestCheckDiscovery(t *testing.T) {
	const dir = "/d/"
	key := dir + "alpha/r0"
	value := func(status string) string {
		return fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:20000","Metadata":{"id":"r0","weight":1,"status":%q}}`, status)
	}
	put := func(rev int64, lease clientv3.LeaseID) change {
		return change{rev: rev, key: key, value: value("serving"), lease: lease, seen: time.Duration(rev) * ms}
	}
	del := func(rev int64, lease clientv3.LeaseID) change {
		return change{rev: rev, key: key, value: value("serving"), lease: lease, del: true, seen: time.Duration(rev) * ms}
	}
	inst := func(rev int64, lease clientv3.LeaseID) discovery.Instance {
		return discovery.Instance{Service: "alpha", ID: "r0", Addr: "127.0.0.1:20000", Weight: 1, Status: discovery.Serving,
			Key: key, Revision: rev, Lease: lease}
	}
	seen := func(at time.Duration, rev int64, list ...discovery.Instance) seenList {
		return seenList{watcher: "w", service: "alpha", exact: true, at: at, rev: rev, list: list}
	}
	for _, tc := range []struct {
		name  string
		cs    []change
		lives []*regLife // leases 10 and 11 are granted to the first, 12 to the second
		seen  []seenList
		scan  clientv3.LeaseID
		want  string
	}{
		{"registered, lost, registered again, seen", []change{put(1, 10), put(2, 11), del(3, 11), put(4, 12)},
			[]*regLife{{id: "r0", how: "killed", end: 3 * ms}, {id: "r0", how: "open", registered: 4 * ms}},
			[]seenList{seen(1*ms, 1, inst(1, 10)), seen(2*ms, 3), seen(5*ms, 4, inst(4, 12))}, 12, ""},
		{"a put without a lease", []change{put(1, 0), put(2, 12)},
			[]*regLife{{id: "r0", how: "killed"}, {id: "r0", how: "open"}},
			[]seenList{seen(5*ms, 2, inst(2, 12))}, 12, "without a lease"},
		{"a list etcd never held", []change{put(1, 10), del(2, 10), put(3, 12)},
			[]*regLife{{id: "r0", how: "killed"}, {id: "r0", how: "open"}},
			[]seenList{seen(1*ms, 2, inst(1, 10)), seen(5*ms, 3, inst(3, 12))}, 12, "etcd held"},
		{"a revision going back", []change{put(1, 12)},
			[]*regLife{{id: "r0", how: "killed"}, {id: "r0", how: "open"}},
			[]seenList{seen(1*ms, 5, inst(1, 12)), seen(2*ms, 4, inst(1, 12))}, 12, "went back"},
		{"over another registration's key", []change{put(1, 10), put(2, 12)},
			[]*regLife{{id: "r0", how: "killed"}, {id: "r0", how: "open"}},
			[]seenList{seen(5*ms, 2, inst(2, 12))}, 12, "overwrote"},
		{"a live instance missing at the end", []change{put(1, 10), del(2, 10), put(3, 12)},
			[]*regLife{{id: "r0", how: "killed"}, {id: "r0", how: "open"}},
			[]seenList{seen(1*ms, 1, inst(1, 10)), seen(5*ms, 2)}, 12, "did not show"},
		{"a write long after its registration ended",
			[]change{put(1, 10), {rev: 2, key: key, value: value("draining"), lease: 11, seen: 20 * time.Second}, del(3, 11), put(4, 12)},
			[]*regLife{{id: "r0", how: "killed", end: 1 * ms}, {id: "r0", how: "open"}},
			[]seenList{seen(21*time.Second, 4, inst(4, 12))}, 12, "after its registration ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newDiscoveryRecords(dir)
			rec.fates["r0"], rec.addrs["r0"], rec.services["r0"] = fateAlive, "127.0.0.1:20000", "alpha"
			rec.watchers["w"] = "alpha"
			rec.lives = tc.lives
			rec.byLease[10], rec.byLease[11], rec.byLease[12] = tc.lives[0], tc.lives[0], tc.lives[1]
			rec.seen = tc.seen
			rec.scan = []scannedKey{{key, tc.scan}}
			got, _ := rec.check(tc.cs, 0, nil)
			expectViolation(t, got, tc.want)
		})
	}
}
