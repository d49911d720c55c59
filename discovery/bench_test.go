package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The benchmarks put this package side by side with etcd's own naming, in
// the same run and on the same embedded etcd (with fsync, except the
// cluster): an instance registered with endpoints.Manager under a lease
// kept alive by clientv3's KeepAlive, and dialled through the etcd:///
// resolver with round_robin. Each reports both figures and their ratio,
// lockstep / etcd naming; a log line repeats them. The two sides take
// turns, so that both share every drift of a busy machine.
//
//	go test ./discovery -run '^$' -bench . -benchtime 1x -count 3

// registry is one side of a comparison: how an instance is registered, and
// how a client dials its service.
type registry struct {
	name     string
	register func(ctx context.Context, cli *clientv3.Client, prefix string, in discovery.Instance, ttl time.Duration) (instance, error)
	target   func(prefix, service string) string
	resolver func(cli *clientv3.Client, prefix string) resolver.Builder
	config   string // the service config: the balancer
}

// instance is a registered instance of either side.
type instance interface {
	// drain stops new calls to the instance as well as its side can:
	// lockstep marks it draining, etcd naming has no such thing and
	// deletes its key.
	drain(ctx context.Context) error
	// close deregisters the instance at once.
	close(ctx context.Context) error
}

var registries = []registry{
	{
		name: "lockstep",
		register: func(ctx context.Context, cli *clientv3.Client, prefix string, in discovery.Instance, ttl time.Duration) (instance, error) {
			r, err := discovery.Register(ctx, cli, prefix, in, discovery.WithTTL(ttl), discovery.WithGrace(0))
			if err != nil {
				return nil, err
			}
			return lockstepInstance{r}, nil
		},
		target:   func(_, service string) string { return discovery.Scheme + ":///" + service },
		resolver: func(cli *clientv3.Client, prefix string) resolver.Builder { return discovery.NewResolver(cli, prefix) },
		config:   discovery.WeightedRoundRobin,
	},
	{
		name: "etcd",
		register: func(ctx context.Context, cli *clientv3.Client, prefix string, in discovery.Instance, ttl time.Duration) (instance, error) {
			return registerWithManager(ctx, cli, prefix, in, ttl)
		},
		// etcd's resolver drops one leading '/' of the target's path.
		target: func(prefix, service string) string { return "etcd:///" + prefix + "/" + service },
		resolver: func(cli *clientv3.Client, _ string) resolver.Builder {
			rb, _ := etcdresolver.NewBuilder(cli) // never fails
			return rb
		},
		config: `{"loadBalancingConfig":[{"round_robin":{}}]}`,
	},
}

type lockstepInstance struct{ r *discovery.Registration }

func (l lockstepInstance) drain(ctx context.Context) error { return l.r.Drain(ctx) }
func (l lockstepInstance) close(ctx context.Context) error { return l.r.Close(ctx) }

// managerInstance is what a user of etcd naming writes: a lease, the
// endpoint under it, clientv3's KeepAlive, and nothing that registers the
// endpoint again once the keepalive channel closes.
type managerInstance struct {
	cli    *clientv3.Client
	em     endpoints.Manager
	key    string
	lease  clientv3.LeaseID
	stop   context.CancelFunc
	kaDone chan struct{} // closed when the keepalive channel closes
	kaEnd  atomic.Int64  // when, in unix ns
}

func registerWithManager(ctx context.Context, cli *clientv3.Client, prefix string, in discovery.Instance, ttl time.Duration) (*managerInstance, error) {
	target := prefix + "/" + in.Service
	em, err := endpoints.NewManager(cli, target)
	if err != nil {
		return nil, err
	}
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, err
	}
	m := &managerInstance{cli: cli, em: em, key: target + "/" + in.ID, lease: g.ID, kaDone: make(chan struct{})}
	if err := em.AddEndpoint(ctx, m.key, endpoints.Endpoint{Addr: in.Addr}, clientv3.WithLease(g.ID)); err != nil {
		return nil, err
	}
	kctx, stop := context.WithCancel(context.Background())
	ka, err := cli.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		return nil, err
	}
	m.stop = stop
	go func() {
		defer close(m.kaDone)
		for range ka {
		}
		m.kaEnd.Store(time.Now().UnixNano())
	}()
	return m, nil
}

func (m *managerInstance) drain(ctx context.Context) error { return m.em.DeleteEndpoint(ctx, m.key) }

func (m *managerInstance) close(ctx context.Context) error {
	m.stop()
	<-m.kaDone
	if m.cli.Ctx().Err() != nil {
		return nil // the process "died": its lease expires on its own
	}
	_, err := m.cli.Revoke(ctx, m.lease)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		err = nil
	}
	return err
}

// benchBackend is a backend (see helpers_test.go) for a benchmark.
func benchBackend(tb testing.TB, name string) *backend {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &backend{name: name, addr: lis.Addr().String(), srv: grpc.NewServer()}
	healthpb.RegisterHealthServer(b.srv, b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		b.srv.Stop()
		<-done
	})
	return b
}

// benchDial dials service through reg's resolver on the caller's client.
// The caller closes the connection; so does the benchmark's end.
func benchDial(tb testing.TB, reg registry, cli *clientv3.Client, prefix, service string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(reg.resolver(cli, prefix)),
		grpc.WithDefaultServiceConfig(reg.config),
	}, opts...)
	conn, err := grpc.NewClient(reg.target(prefix, service), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// callsUntil calls through c until want serves a call, every interval.
func callsUntil(ctx context.Context, c healthpb.HealthClient, want string, interval time.Duration) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		name, _ := call(cctx, c)
		cancel()
		if name == want {
			return nil
		}
		if !pause(ctx, interval) {
			return fmt.Errorf("no call served by %s: %w", want, ctx.Err())
		}
	}
}

// pause waits d, or less if ctx ends; it reports whether ctx is alive.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func median(samples []time.Duration) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRegisterToFirstCall measures the time from the start of a
// registration (Register; for etcd naming Grant, AddEndpoint and
// KeepAlive) to the end of the first call that succeeds on a client
// dialled before, whose resolver already watches the empty service. The
// caller waits for its connection to become ready and then calls: a call
// made earlier would fail at once on lockstep's side (an empty service
// fails fast, even for a call that waits for ready) and be held on etcd
// naming's (no address yet), which would measure the polling, not the
// registration. Each round is one fresh service per side; the figures are
// medians of the rounds: first-ms to the end of the call, register-ms to
// the registration's return.
func BenchmarkRegisterToFirstCall(b *testing.B) {
	const rounds = 20
	srv := testutil.FsyncServer(b)
	caller := testutil.BenchClient(b, srv)
	owner := testutil.BenchClient(b, srv) // the instance's process
	be := benchBackend(b, "b")
	base := testutil.ServerWatchers(b)
	var first, reg [2][]time.Duration
	for i := range b.N * rounds {
		for j := range registries {
			k := (i + j) % len(registries)
			r := registries[k]
			f, g := registerToCall(b, r, caller, owner, "/bench/first-"+r.name, fmt.Sprintf("svc-%d", i), be.addr, base)
			first[k] = append(first[k], f)
			reg[k] = append(reg[k], g)
		}
	}
	l, e := median(first[0]), median(first[1])
	b.ReportMetric(ms(l), "lockstep-first-ms")
	b.ReportMetric(ms(e), "etcd-first-ms")
	b.ReportMetric(float64(l)/float64(e), "first-ratio")
	b.ReportMetric(ms(median(reg[0])), "lockstep-register-ms")
	b.ReportMetric(ms(median(reg[1])), "etcd-register-ms")
	b.Logf("registration to first call, median of %d: lockstep %.1f ms (register %.1f ms), etcd naming %.1f ms (register %.1f ms), lockstep/etcd %.2f",
		len(first[0]), ms(l), ms(median(reg[0])), ms(e), ms(median(reg[1])), float64(l)/float64(e))
}

func registerToCall(b *testing.B, reg registry, caller, owner *clientv3.Client, prefix, service, addr string, base int) (first, registered time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := benchDial(b, reg, caller, prefix, service)
	defer conn.Close()
	conn.Connect()
	testutil.AwaitWatchers(b, ctx, base+1) // the client's resolver watches the service
	got := make(chan error, 1)
	go func() {
		for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
			if !conn.WaitForStateChange(ctx, st) {
				got <- ctx.Err()
				return
			}
		}
		_, err := call(ctx, healthpb.NewHealthClient(conn))
		got <- err
	}()
	start := time.Now()
	in, err := reg.register(ctx, owner, prefix, discovery.Instance{Service: service, ID: "i", Addr: addr}, 10*time.Second)
	if err != nil {
		b.Fatalf("%s: register: %v", reg.name, err)
	}
	registered = time.Since(start)
	if err := <-got; err != nil {
		b.Fatalf("%s: first call: %v", reg.name, err)
	}
	first = time.Since(start)
	if err := in.close(ctx); err != nil {
		b.Fatalf("%s: deregister: %v", reg.name, err)
	}
	conn.Close()
	testutil.AwaitWatchers(b, ctx, base)
	return first, registered
}

// BenchmarkCrashToRemoval measures how long a client keeps routing calls
// to an instance whose process died without deregistering: its etcd
// client is closed, nothing revokes its lease, which expires by its TTL
// (2 s). Its gRPC server keeps answering, so that only the registry can
// take it out of the rotation; a second instance of the service serves
// the other calls. One caller calls every 2 ms; the figure is the time
// from the crash to the end of the last call the dead instance served,
// the mean of the rounds, and its share of the TTL. The crash comes right
// after the registration, when the lease has its whole TTL left: the
// slow end of the range (a crash just before a keepalive would leave
// two thirds of it), and etcd looks for expired leases every 500 ms. A
// round in which the instance was still served 3 TTLs after the crash is
// a miss.
func BenchmarkCrashToRemoval(b *testing.B) {
	if testing.Short() {
		b.Skip("waits for leases to expire")
	}
	const (
		rounds = 2
		ttl    = 2 * time.Second
	)
	srv := testutil.FsyncServer(b)
	keeper := testutil.BenchClient(b, srv) // the surviving instance's process
	survivor, victim := benchBackend(b, "survivor"), benchBackend(b, "victim")
	conns := make([]healthpb.HealthClient, len(registries))
	for k, r := range registries {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		prefix := "/bench/crash-" + r.name
		in, err := r.register(ctx, keeper, prefix, discovery.Instance{Service: "svc", ID: "survivor", Addr: survivor.addr}, 10*time.Second)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { in.close(context.Background()) })
		conns[k] = healthpb.NewHealthClient(benchDial(b, r, testutil.BenchClient(b, srv), prefix, "svc"))
	}
	var removal [2][]time.Duration
	var misses [2]int
	for i := range b.N * rounds {
		for j := range registries {
			k := (i + j) % len(registries)
			d, ok := crashToRemoval(b, registries[k], srv, conns[k], "/bench/crash-"+registries[k].name, fmt.Sprintf("victim-%d", i), victim.addr, ttl)
			if !ok {
				misses[k]++
				continue
			}
			removal[k] = append(removal[k], d)
		}
	}
	l, e := testutil.Mean(removal[0]), testutil.Mean(removal[1])
	b.ReportMetric(ms(l), "lockstep-ms")
	b.ReportMetric(ms(e), "etcd-ms")
	b.ReportMetric(float64(l)/float64(ttl), "lockstep-ttls")
	b.ReportMetric(float64(e)/float64(ttl), "etcd-ttls")
	b.ReportMetric(float64(l)/float64(e), "ratio")
	b.ReportMetric(float64(misses[0]), "lockstep-misses")
	b.ReportMetric(float64(misses[1]), "etcd-misses")
	b.Logf("crash to removal, TTL %v: lockstep %v (%.2f TTL) %v, etcd naming %v (%.2f TTL) %v, lockstep/etcd %.2f, misses %d/%d",
		ttl, l.Round(time.Millisecond), float64(l)/float64(ttl), removal[0], e.Round(time.Millisecond), float64(e)/float64(ttl), removal[1],
		float64(l)/float64(e), misses[0], misses[1])
}

func crashToRemoval(b *testing.B, reg registry, srv *embedded.Server, c healthpb.HealthClient, prefix, id, addr string, ttl time.Duration) (time.Duration, bool) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner, err := clientv3.New(srv.ClientConfig()) // the instance's process
	if err != nil {
		b.Fatal(err)
	}
	defer owner.Close()
	in, err := reg.register(ctx, owner, prefix, discovery.Instance{Service: "svc", ID: id, Addr: addr}, ttl)
	if err != nil {
		b.Fatalf("%s: register: %v", reg.name, err)
	}
	if err := callsUntil(ctx, c, "victim", 2*time.Millisecond); err != nil {
		b.Fatalf("%s: %v", reg.name, err)
	}
	crash := time.Now()
	owner.Close()
	const quiet = 500 * time.Millisecond
	last, removed := crash, false
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		name, _ := call(cctx, c)
		cancel()
		now := time.Now()
		if name == "victim" {
			last = now
		}
		if now.Sub(last) > quiet {
			removed = true
			break
		}
		if now.Sub(crash) > 3*ttl || !pause(ctx, 2*time.Millisecond) {
			break
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	in.close(cctx) // its client is closed: this only stops its goroutines
	cancel()
	return last.Sub(crash), removed
}

// BenchmarkDrainToLastCall drains one of two instances of a service under
// continuous load (two callers, each calling as fast as it can), and
// measures the time from the start of the drain (lockstep's Drain; etcd
// naming has none, its nearest is deleting the key) to the end of the
// last call the drained instance served, the median of the rounds, and
// the median of the drain call itself (drain-ms: until etcd holds it). It
// counts the calls that failed while it ran, in all rounds, and the calls
// the drained instance served after the drain began, per round. A round
// ends once the drained instance has served no call for half a second.
func BenchmarkDrainToLastCall(b *testing.B) {
	const rounds = 8
	srv := testutil.FsyncServer(b)
	owner := testutil.BenchClient(b, srv)
	drained, other := benchBackend(b, "drained"), benchBackend(b, "other")
	var last, drainCall [2][]time.Duration
	var failed, after [2]int64
	for i := range b.N * rounds {
		for j := range registries {
			k := (i + j) % len(registries)
			r := drainToLastCall(b, registries[k], srv, owner, fmt.Sprintf("svc-%d", i), drained, other)
			last[k] = append(last[k], r.last)
			drainCall[k] = append(drainCall[k], r.drainCall)
			failed[k] += r.failed
			after[k] += r.after
		}
	}
	l, e := median(last[0]), median(last[1])
	b.ReportMetric(ms(l), "lockstep-ms")
	b.ReportMetric(ms(e), "etcd-ms")
	b.ReportMetric(float64(l)/float64(e), "ratio")
	b.ReportMetric(ms(median(drainCall[0])), "lockstep-drain-ms")
	b.ReportMetric(ms(median(drainCall[1])), "etcd-drain-ms")
	b.ReportMetric(float64(failed[0]), "lockstep-failed")
	b.ReportMetric(float64(failed[1]), "etcd-failed")
	b.ReportMetric(float64(after[0])/float64(len(last[0])), "lockstep-calls-after")
	b.ReportMetric(float64(after[1])/float64(len(last[1])), "etcd-calls-after")
	b.Logf("drain to last new call, median of %d: lockstep %v (Drain %v), etcd naming (delete) %v (Delete %v), lockstep/etcd %.2f; failed calls %d / %d; calls after the drain per round %.1f / %.1f",
		len(last[0]), l.Round(time.Microsecond), median(drainCall[0]).Round(time.Microsecond),
		e.Round(time.Microsecond), median(drainCall[1]).Round(time.Microsecond),
		float64(l)/float64(e), failed[0], failed[1],
		float64(after[0])/float64(len(last[0])), float64(after[1])/float64(len(last[1])))
}

type drainResult struct {
	last, drainCall time.Duration
	failed, after   int64
}

func drainToLastCall(b *testing.B, reg registry, srv *embedded.Server, owner *clientv3.Client, service string, drained, other *backend) drainResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := "/bench/drain-" + reg.name
	var ins []instance
	for _, be := range []*backend{drained, other} {
		in, err := reg.register(ctx, owner, prefix, discovery.Instance{Service: service, ID: be.name, Addr: be.addr}, 10*time.Second)
		if err != nil {
			b.Fatalf("%s: register: %v", reg.name, err)
		}
		ins = append(ins, in)
	}
	caller, err := clientv3.New(srv.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	conn := benchDial(b, reg, caller, prefix, service)
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	for _, be := range []*backend{drained, other} {
		if err := callsUntil(ctx, c, be.name, 2*time.Millisecond); err != nil {
			b.Fatalf("%s: %v", reg.name, err)
		}
	}

	const workers = 2
	var (
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		lasts  [workers]time.Time
		failed atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				name, err := call(cctx, c)
				cancel()
				switch {
				case err != nil:
					failed.Add(1)
				case name == drained.name:
					lasts[w] = time.Now()
				}
			}
		})
	}
	// Under load: the drained instance has served calls from both callers.
	for n := drained.calls.Load(); drained.calls.Load() < n+100; {
		if !pause(ctx, time.Millisecond) {
			b.Fatalf("%s: no load", reg.name)
		}
	}
	before := drained.calls.Load()
	start := time.Now()
	if err := ins[0].drain(ctx); err != nil {
		b.Fatalf("%s: drain: %v", reg.name, err)
	}
	drainCall := time.Since(start)
	const quiet = 500 * time.Millisecond
	seen, since := drained.calls.Load(), time.Now()
	for time.Since(since) < quiet && pause(ctx, 5*time.Millisecond) {
		if n := drained.calls.Load(); n != seen {
			seen, since = n, time.Now()
		}
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		b.Fatalf("%s: the drained instance kept serving new calls", reg.name)
	}
	last := start
	for _, t := range lasts {
		if t.After(last) {
			last = t
		}
	}
	for _, in := range ins {
		if err := in.close(ctx); err != nil {
			b.Fatalf("%s: deregister: %v", reg.name, err)
		}
	}
	return drainResult{last: last.Sub(start), drainCall: drainCall, failed: failed.Load(), after: seen - before}
}

// BenchmarkWatchScale registers 200 instances across 20 services and
// watches every service from 50 etcd clients (50 processes): lockstep with
// 20 Watchers per client, etcd naming with 20 endpoints.Manager watch
// channels per client, each read by a goroutine that keeps the set, as
// its resolver does. It reports how many watchers etcd holds for them
// (etcd-watchers), and the heap and goroutine stacks they take, per
// instance per client (B/instance-client), with the goroutines per
// client. The embedded etcd runs in this process: the memory includes the
// server's side of the watches.
//
// The first instance of each service is changed after the watches are
// open, and every watcher seeing the change proves its watch is in place
// on the server before anything is counted.
func BenchmarkWatchScale(b *testing.B) {
	srv := testutil.FsyncServer(b)
	var res [2]scaleResult
	for i := range b.N {
		for j := range registries {
			k := (i + j) % len(registries)
			res[k] = watchScale(b, srv, registries[k], i)
		}
	}
	l, e := res[0], res[1]
	b.ReportMetric(float64(l.watchers), "lockstep-watchers")
	b.ReportMetric(float64(e.watchers), "etcd-watchers")
	b.ReportMetric(l.bytes(), "lockstep-B/instance-client")
	b.ReportMetric(e.bytes(), "etcd-B/instance-client")
	b.ReportMetric(l.bytes()/e.bytes(), "memory-ratio")
	b.ReportMetric(l.goroutines, "lockstep-goroutines/client")
	b.ReportMetric(e.goroutines, "etcd-goroutines/client")
	b.Logf("%d instances, %d services, %d clients: etcd watchers lockstep %d, etcd naming %d (%.3f); B/instance-client lockstep %.0f (heap %.0f, stacks %.0f), etcd naming %.0f (heap %.0f, stacks %.0f), lockstep/etcd %.2f; goroutines/client %.0f / %.0f",
		scaleServices*scalePerService, scaleServices, scaleClients, l.watchers, e.watchers, float64(l.watchers)/float64(e.watchers),
		l.bytes(), l.heap, l.stacks, e.bytes(), e.heap, e.stacks, l.bytes()/e.bytes(), l.goroutines, e.goroutines)
}

const (
	scaleServices   = 20
	scalePerService = 10
	scaleClients    = 50
)

type scaleResult struct {
	watchers     int
	heap, stacks float64 // bytes per instance per client
	goroutines   float64 // per client
}

func (r scaleResult) bytes() float64 { return r.heap + r.stacks }

func watchScale(b *testing.B, srv *embedded.Server, reg registry, round int) scaleResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("/bench/scale-%s-%d", reg.name, round)
	owner, err := clientv3.New(srv.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer owner.Close()
	service := func(s int) string { return fmt.Sprintf("svc-%02d", s) }

	// The instances, 16 registrations at a time.
	ins := make([][]instance, scaleServices)
	for s := range ins {
		ins[s] = make([]instance, scalePerService)
	}
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 16)
		errs = make(chan error, scaleServices*scalePerService)
	)
	for s := range scaleServices {
		for i := range scalePerService {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				in, err := reg.register(ctx, owner, prefix, discovery.Instance{Service: service(s), ID: fmt.Sprintf("i%02d", i),
					Addr: fmt.Sprintf("10.0.%d.%d:8080", s, i+1)}, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				ins[s][i] = in
			})
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("%s: register: %v", reg.name, err)
	}
	defer func() {
		for _, list := range ins {
			for _, in := range list {
				in.close(context.Background())
			}
		}
	}()

	clis := make([]*clientv3.Client, scaleClients)
	for i := range clis {
		if clis[i], err = clientv3.New(srv.ClientConfig()); err != nil {
			b.Fatal(err)
		}
		defer clis[i].Close()
		if _, err := clis[i].Get(ctx, "connect"); err != nil {
			b.Fatal(err)
		}
	}

	// Heap and goroutine stacks: a watcher is mostly its goroutines.
	mem := func() (heap, stacks int64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc), int64(m.StackInuse)
	}
	watchersBefore := testutil.ServerWatchers(b)
	g0 := runtime.NumGoroutine()
	h0, s0 := mem()

	var ready func() bool // every watcher has seen the change
	var stop func()
	switch reg.name {
	case "lockstep":
		ws := make([]*discovery.Watcher, 0, scaleClients*scaleServices)
		for _, cli := range clis {
			for s := range scaleServices {
				w, err := discovery.Watch(ctx, cli, prefix, service(s))
				if err != nil {
					b.Fatal(err)
				}
				ws = append(ws, w)
			}
		}
		ready = func() bool {
			for _, w := range ws {
				in, ok := find(w.Instances(), "i00")
				if len(w.Instances()) != scalePerService || !ok || in.Weight != 2 {
					return false
				}
			}
			return true
		}
		stop = func() {
			for _, w := range ws {
				w.Close()
			}
		}
	case "etcd":
		wctx, cancelWatches := context.WithCancel(ctx)
		var (
			pending atomic.Int64
			readers sync.WaitGroup
		)
		pending.Store(scaleClients * scaleServices)
		for _, cli := range clis {
			for s := range scaleServices {
				em, err := endpoints.NewManager(cli, prefix+"/"+service(s))
				if err != nil {
					b.Fatal(err)
				}
				wch, err := em.NewWatchChannel(wctx)
				if err != nil {
					b.Fatal(err)
				}
				probe := prefix + "/" + service(s) + "/i00"
				readers.Go(func() {
					set := map[string]endpoints.Endpoint{}
					done := false
					for ups := range wch {
						for _, up := range ups {
							switch up.Op {
							case endpoints.Add:
								set[up.Key] = up.Endpoint
							case endpoints.Delete:
								delete(set, up.Key)
							}
						}
						if md, _ := set[probe].Metadata.(map[string]any); !done && len(set) == scalePerService && md["weight"] == 2.0 {
							done = true
							pending.Add(-1)
						}
					}
				})
			}
		}
		ready = func() bool { return pending.Load() == 0 }
		stop = func() {
			cancelWatches()
			readers.Wait()
		}
	}
	defer stop()

	// The change: the first instance of each service gets weight 2.
	for s := range scaleServices {
		var err error
		switch in := ins[s][0].(type) {
		case lockstepInstance:
			err = in.r.Update(ctx, func(in *discovery.Instance) { in.Weight = 2 })
		case *managerInstance:
			err = in.em.AddEndpoint(ctx, in.key, endpoints.Endpoint{Addr: fmt.Sprintf("10.0.%d.1:8080", s),
				Metadata: map[string]any{"weight": 2}}, clientv3.WithLease(in.lease))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for !ready() {
		if !pause(ctx, 10*time.Millisecond) {
			b.Fatalf("%s: the watchers never all saw the change", reg.name)
		}
	}
	watchers := testutil.ServerWatchers(b) - watchersBefore
	h1, s1 := mem()
	g1 := runtime.NumGoroutine()
	pairs := float64(scaleServices * scalePerService * scaleClients)
	return scaleResult{
		watchers:   watchers,
		heap:       float64(h1-h0) / pairs,
		stacks:     float64(s1-s0) / pairs,
		goroutines: float64(g1-g0) / scaleClients,
	}
}
