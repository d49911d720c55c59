package barrier_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// BenchmarkDoubleBarrier measures rounds per second of n participants going
// through Enter and Leave together, against one embedded etcd member with
// fsync, and the same with etcd's recipe.DoubleBarrier. The recipe cannot
// be reused (see docs/barrier.md), so it gets a fresh prefix every round,
// which is the best it can do. It also reports the median and 99th
// percentile of a round as participant 0 sees it, from its Enter call to
// its Leave's return.
func BenchmarkDoubleBarrier(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	for _, n := range []int{8, 32} {
		b.Run(fmt.Sprintf("lockstep/n=%d", n), func(b *testing.B) {
			ds := make([]*barrier.DoubleBarrier, n)
			for i := range ds {
				s := benchSession(b, ctx, srv)
				d, err := barrier.NewDouble(s, fmt.Sprintf("/bench/lockstep-%d", n), n)
				if err != nil {
					b.Fatal(err)
				}
				ds[i] = d
			}
			runRounds(b, n, func(i, round int) error {
				if err := ds[i].Enter(ctx); err != nil {
					return err
				}
				return ds[i].Leave(ctx)
			})
		})
		b.Run(fmt.Sprintf("etcd-recipe/n=%d", n), func(b *testing.B) {
			ss := make([]*concurrency.Session, n)
			for i := range ss {
				cli := testutil.BenchClient(b, srv)
				s, err := concurrency.NewSession(cli)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				ss[i] = s
			}
			runRounds(b, n, func(i, round int) error {
				d := recipe.NewDoubleBarrier(ss[i], fmt.Sprintf("/bench/recipe-%d/%d", n, round), n)
				if err := d.Enter(); err != nil {
					return err
				}
				return d.Leave()
			})
		})
	}
}

// runRounds runs b.N rounds of n participants and reports rounds/s and the
// round time quantiles seen by participant 0.
func runRounds(b *testing.B, n int, round func(i, round int) error) {
	b.Helper()
	times := make([]time.Duration, 0, b.N)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for r := range b.N {
				t0 := time.Now()
				if err := round(i, r); err != nil {
					errs <- fmt.Errorf("participant %d, round %d: %w", i, r, err)
					return
				}
				if i == 0 {
					times = append(times, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rounds/s")
	testutil.ReportLatency(b, "", times)
}

func benchSession(b *testing.B, ctx context.Context, srv *embedded.Server) *lockstep.Session {
	b.Helper()
	s, err := lockstep.NewSession(ctx, testutil.BenchClient(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
