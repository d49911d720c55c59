package semaphore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

// BenchmarkSemaphore compares this package with a semaphore built the
// obvious way (every waiter watches the whole prefix and reads the queue
// again on every event) on one embedded etcd member with fsync, in the same
// run:
//
//	go test -run '^$' -bench BenchmarkSemaphore ./semaphore/
//
// uncontended: one client acquires and releases in a loop (KV round trips
// per acquire+release). contended: 12 sessions share 3 permits and release
// at once (acquisitions per second, time spent in Acquire). wakeups: 3
// holders and 50 queued waiters, permits released one at a time (watch
// events delivered to waiters per release, release-to-grant latency).
func BenchmarkSemaphore(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx) // with fsync, as in production
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	bs := &benchServer{srv: srv}
	defer bs.close()

	impls := []struct {
		name string
		new  func(s *lockstep.Session, prefix string, limit int) benchSem
	}{
		{"lockstep", newLockstepSem},
		{"obvious", newObviousSem},
	}
	for _, impl := range impls {
		b.Run("uncontended/"+impl.name, func(b *testing.B) {
			cli, rpc := bs.client(b)
			sem := impl.new(bs.session(b, ctx, cli), bs.prefix(), 1)
			rpc.reset()
			b.ResetTimer()
			for range b.N {
				release, err := sem.acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(rpc.kv.Load())/float64(b.N), "rpcs/op")
		})
	}
	for _, impl := range impls {
		b.Run("contended-12x3/"+impl.name, func(b *testing.B) {
			benchContended(b, ctx, bs, impl.new)
		})
	}
	for _, impl := range impls {
		b.Run("wakeups-50/"+impl.name, func(b *testing.B) {
			benchWakeups(b, ctx, bs, impl.new)
		})
	}
}

// benchContended: 12 sessions, 3 permits, each worker acquires and
// releases at once, b.N acquisitions in all.
func benchContended(b *testing.B, ctx context.Context, bs *benchServer, newSem func(*lockstep.Session, string, int) benchSem) {
	const workers, limit = 12, 3
	prefix := bs.prefix()
	cli, rpc := bs.client(b)
	sems := make([]benchSem, workers)
	for i := range sems {
		sems[i] = newSem(bs.session(b, ctx, cli), prefix, limit)
	}
	var (
		next  atomic.Int64
		mu    sync.Mutex
		waits []time.Duration
		wg    sync.WaitGroup
		fail  atomic.Pointer[error]
	)
	rpc.reset()
	b.ResetTimer()
	start := time.Now()
	for _, sem := range sems {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				release, err := sem.acquire(ctx)
				if err != nil {
					fail.Store(&err)
					return
				}
				d := time.Since(t0)
				if err := release(ctx); err != nil {
					fail.Store(&err)
					return
				}
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := fail.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "acquires/s")
	testutil.ReportLatency(b, "wait-", waits)
	b.ReportMetric(float64(rpc.events.Load())/float64(b.N), "watch-events/op")
}

// benchWakeups: per iteration, 3 holders and 50 waiters queued in order,
// each waiter on its own counting client; then the oldest permit is
// released, one at a time, until every waiter was served. A waiter counts
// the watch events it received from the moment all were queued until its
// Acquire returned.
func benchWakeups(b *testing.B, ctx context.Context, bs *benchServer, newSem func(*lockstep.Session, string, int) benchSem) {
	const waiters, limit = 50, 3
	hcli, _ := bs.client(b)
	holderSess := bs.session(b, ctx, hcli)
	type waiter struct {
		s   *lockstep.Session
		rpc *rpcCount
	}
	ws := make([]waiter, waiters)
	for i := range ws {
		cli, rpc := bs.client(b)
		ws[i] = waiter{bs.session(b, ctx, cli), rpc}
	}
	type result struct {
		i       int
		release func(context.Context) error
		err     error
		events  int64
	}
	var events int64
	var handoffs []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		prefix := bs.prefix()
		holders := newSem(holderSess, prefix, limit)
		var held []func(context.Context) error
		for range limit {
			release, err := holders.acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			held = append(held, release)
		}
		out := make(chan result, waiters)
		for i, w := range ws {
			sem := newSem(w.s, prefix, limit)
			go func() {
				release, err := sem.acquire(ctx)
				out <- result{i, release, err, w.rpc.events.Load()}
			}()
			if err := waitCount(ctx, hcli, prefix, limit+i+1); err != nil {
				b.Fatal(err)
			}
		}
		for _, w := range ws {
			w.rpc.reset()
		}
		b.StartTimer()
		for n := range waiters {
			t0 := time.Now()
			if err := held[0](ctx); err != nil {
				b.Fatal(err)
			}
			held = held[1:]
			r := <-out
			handoffs = append(handoffs, time.Since(t0))
			if r.err != nil {
				b.Fatal(r.err)
			}
			if r.i != n {
				b.Fatalf("release %d granted waiter %d", n, r.i)
			}
			events += r.events
			held = append(held, r.release)
		}
		for _, release := range held {
			if err := release(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(events)/float64(b.N*waiters), "wakeups/release")
	testutil.ReportLatency(b, "handoff-", handoffs)
}

// benchSem is what the benchmark needs of a semaphore.
type benchSem interface {
	acquire(ctx context.Context) (release func(context.Context) error, err error)
}

type lockstepSem struct{ sem *semaphore.Semaphore }

func newLockstepSem(s *lockstep.Session, prefix string, limit int) benchSem {
	sem, err := semaphore.New(s, prefix, limit)
	if err != nil {
		panic(err)
	}
	return lockstepSem{sem}
}

func (l lockstepSem) acquire(ctx context.Context) (func(context.Context) error, error) {
	p, err := l.sem.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return p.Release, nil
}

// obviousSem is the semaphore most people would write first: create a key,
// read the first limit keys by create revision, and if ours is not among
// them watch the whole prefix and read again on every event. Creating the
// key and reading the queue is one transaction, as in ours, and each watch
// starts just after the read it follows, the usual way to not miss an
// event. (Under contention such a watch often starts at a revision that is
// already past, and etcd then serves it from its 100ms catch-up loop; that
// is part of what the obvious way costs.)
type obviousSem struct {
	s      *lockstep.Session
	prefix string
	limit  int
}

func newObviousSem(s *lockstep.Session, prefix string, limit int) benchSem {
	return &obviousSem{s, prefix, limit}
}

func (o *obviousSem) acquire(ctx context.Context) (func(context.Context) error, error) {
	cli := o.s.Client()
	key := fmt.Sprintf("%s/%x-%016x", o.prefix, int64(o.s.Lease()), rand.Uint64())
	first := clientv3.OpGet(o.prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(int64(o.limit)))
	resp, err := cli.Txn(ctx).Then(clientv3.OpPut(key, "", clientv3.WithLease(o.s.Lease())), first).Commit()
	if err != nil {
		return nil, err
	}
	kvs, rev := resp.Responses[1].GetResponseRange().Kvs, resp.Header.Revision
	release := func(ctx context.Context) error { _, err := cli.Delete(ctx, key); return err }
	for {
		if slices.ContainsFunc(kvs, func(kv *mvccpb.KeyValue) bool { return string(kv.Key) == key }) {
			return release, nil
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := cli.Watch(wctx, o.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		select {
		case <-wch:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		g, err := cli.Do(ctx, first)
		if err != nil {
			return nil, err
		}
		kvs, rev = g.Get().Kvs, g.Get().Header.Revision
	}
}

// benchServer hands out counting clients and sessions on the benchmark's
// server and closes them before it.
type benchServer struct {
	srv     *embedded.Server
	mu      sync.Mutex
	clients []*clientv3.Client
	seq     int
}

func (bs *benchServer) client(b *testing.B) (*clientv3.Client, *rpcCount) {
	rpc := &rpcCount{}
	cfg := bs.srv.ClientConfig()
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithChainUnaryInterceptor(rpc.unary), grpc.WithChainStreamInterceptor(rpc.stream))
	cli, err := clientv3.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bs.mu.Lock()
	bs.clients = append(bs.clients, cli)
	bs.mu.Unlock()
	return cli, rpc
}

func (bs *benchServer) session(b *testing.B, ctx context.Context, cli *clientv3.Client) *lockstep.Session {
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func (bs *benchServer) prefix() string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.seq++
	return fmt.Sprintf("/bench/sem-%d", bs.seq)
}

func (bs *benchServer) close() {
	for _, cli := range bs.clients {
		cli.Close()
	}
}

// rpcCount counts KV round trips and watch events on one client. (The
// shared test harness counts the same way but only on its own server.)
type rpcCount struct {
	kv, events atomic.Int64
}

func (c *rpcCount) reset() { c.kv.Store(0); c.events.Store(0) }

func (c *rpcCount) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch method {
	case "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn":
		c.kv.Add(1)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *rpcCount) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &countedStream{cs, c}, nil
}

type countedStream struct {
	grpc.ClientStream
	c *rpcCount
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if wr, ok := m.(*pb.WatchResponse); ok && err == nil {
		s.c.events.Add(int64(len(wr.Events)))
	}
	return err
}

// waitCount blocks until at least n keys exist under prefix/.
func waitCount(ctx context.Context, cli *clientv3.Client, prefix string, n int) error {
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count >= int64(n) {
			return nil
		}
		wctx, cancel := context.WithCancel(ctx)
		select {
		case <-cli.Watch(wctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)):
		case <-ctx.Done():
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
