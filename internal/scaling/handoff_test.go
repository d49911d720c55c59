package scaling_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var sizesFlag = flag.String("scaling.n", "10,100,1000", "participant counts to measure, comma-separated")

// perClient is how many sessions share one etcd client, as processes of a
// fleet would each have their own: enough clients that no one connection
// carries everything.
const perClient = 25

func sizes(b *testing.B) []int {
	var ns []int
	for _, f := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			b.Fatalf("-scaling.n: %q is not a count of at least 2", f)
		}
		ns = append(ns, n)
	}
	return ns
}

// BenchmarkHandoff measures, with n sessions contending for one name, the
// time from the holder's release to the next holder's acquire returning,
// and the watch events all clients receive per handoff. Every contender
// queues again as soon as it has released. Each iteration is one handoff.
func BenchmarkHandoff(b *testing.B) {
	srv := quietServer(b)
	for _, n := range sizes(b) {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/n=%d/%s", im.recipe, n, im.name), func(b *testing.B) {
				handoff(b, srv, im, n)
			})
		}
	}
}

// prefixes names each sub-benchmark's lock.
var prefixes atomic.Int64

// contenders makes n contenders of im on clients that count their calls.
func contenders(b *testing.B, srv *embedded.Server, im impl, n int) (string, []contender, *testutil.RPCCounter) {
	prefix := fmt.Sprintf("/scaling/%s-%d", im.recipe, prefixes.Add(1))
	calls := testutil.NewRPCCounter()
	var cli *clientv3.Client
	cs := make([]contender, n)
	for i := range cs {
		if i%perClient == 0 {
			cfg := srv.ClientConfig()
			calls.Count(&cfg)
			c, err := clientv3.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			cli = c
		}
		cs[i] = im.make(b, cli, prefix)
	}
	return prefix, cs, calls
}

// quietServer starts an embedded etcd with fsync and no log: at a
// thousand participants its warnings about slow requests would bury the
// results.
func quietServer(b *testing.B) *embedded.Server {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.WithLogger(zap.NewNop()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// queued waits until n keys stand under prefix, every contender in line,
// and etcd's count of watchers has settled: every waiter watches.
func queued(b *testing.B, ctx context.Context, srv *embedded.Server, prefix string, n int) {
	cli := testutil.BenchClient(b, srv)
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			b.Fatal(err)
		}
		if resp.Count == int64(n) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	testutil.SettledWatchers(b, ctx)
}

func handoff(b *testing.B, srv *embedded.Server, im impl, n int) {
	prefix, cs, calls := contenders(b, srv, im, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := cs[0].acquire(ctx); err != nil {
		b.Fatal(err)
	}
	var (
		unlockAt atomic.Int64 // when the last holder called release, unix ns
		handoffs atomic.Int64
		samples  = make([]time.Duration, b.N)
		finished = make(chan struct{})
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	loop := func(c contender, holding bool) {
		defer wg.Done()
		for {
			if !holding {
				if err := c.acquire(ctx); err != nil {
					if ctx.Err() == nil {
						errMu.Lock()
						firstErr = errors.Join(firstErr, err)
						errMu.Unlock()
					}
					return
				}
				at := time.Now()
				switch h := handoffs.Add(1); {
				case h <= int64(b.N):
					samples[h-1] = at.Sub(time.Unix(0, unlockAt.Load()))
					if h == int64(b.N) {
						close(finished)
					}
				case ctx.Err() != nil:
					return
				}
			}
			holding = false
			unlockAt.Store(time.Now().UnixNano())
			if err := c.release(ctx); err != nil {
				if ctx.Err() == nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
				}
				return
			}
		}
	}
	wg.Add(n)
	for _, c := range cs[1:] {
		go loop(c, false)
	}
	queued(b, ctx, srv, prefix, n)
	events := calls.WatchEvents()
	b.ResetTimer()
	go loop(cs[0], true)
	select {
	case <-finished:
	case <-ctx.Done():
	}
	b.StopTimer()
	events = calls.WatchEvents() - events
	cancel()
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	testutil.ReportLatency(b, "", samples)
	b.ReportMetric(float64(events)/float64(b.N), "events/handoff")
}
