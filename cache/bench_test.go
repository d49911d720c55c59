package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// BenchmarkChangeToApply measures the time from a Put until every one of N
// subscribers has the new version: lockstep's cache (one etcd watch, N
// subscribers) side by side with N raw clientv3 watchers on the same
// prefix, on one server with fsync, in one run. It reports the latency
// and how many watchers etcd held for each side.
func BenchmarkChangeToApply(b *testing.B) {
	srv := testutil.FsyncServer(b)
	for _, n := range []int{1, 100, 1000} {
		for _, side := range []string{"lockstep", "etcd"} {
			b.Run(fmt.Sprintf("subscribers=%d/%s", n, side), func(b *testing.B) {
				cli := testutil.BenchClient(b, srv)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				prefix := fmt.Sprintf("/bench/apply-%d-%s/", n, side)
				before := testutil.ServerWatchers(b)
				got := make(chan int64, n)
				var wg sync.WaitGroup
				var c *cache.Cache
				if side == "lockstep" {
					var err error
					if c, err = cache.Open(ctx, cli, prefix); err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					for range n {
						sub := c.Subscribe(ctx)
						<-sub // the whole state
						wg.Go(func() {
							for u := range sub {
								got <- u.Revision()
							}
						})
					}
				} else {
					for range n {
						wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
						<-wch
						wg.Go(func() {
							for resp := range wch {
								if len(resp.Events) > 0 {
									got <- resp.Events[len(resp.Events)-1].Kv.ModRevision
								}
							}
						})
					}
				}
				// One change seen by every subscriber: the watches are in
				// place on the server before they are counted.
				warm, err := cli.Put(ctx, prefix+"k", "warm")
				if err != nil {
					b.Fatal(err)
				}
				for seen := 0; seen < n; {
					if <-got >= warm.Header.Revision {
						seen++
					}
				}
				watchers := testutil.ServerWatchers(b) - before
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := range b.N {
					start := time.Now()
					resp, err := cli.Put(ctx, prefix+"k", fmt.Sprint(i))
					if err != nil {
						b.Fatal(err)
					}
					for seen := 0; seen < n; {
						if <-got >= resp.Header.Revision {
							seen++
						}
					}
					lat = append(lat, time.Since(start))
				}
				b.StopTimer()
				testutil.ReportLatency(b, "", lat)
				b.ReportMetric(float64(watchers), "etcd-watchers")
				cancel()
				if c != nil {
					c.Close()
				}
				wg.Wait()
			})
		}
	}
}

// BenchmarkMemory reports the heap a cache holds per cached key and per
// subscriber.
func BenchmarkMemory(b *testing.B) {
	srv := testutil.FsyncServer(b)
	cli := testutil.BenchClient(b, srv)
	ctx := context.Background()
	const keys, subscribers = 10000, 1000
	prefix := "/bench/memory/"
	for i := range keys {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), "a value of some thirty bytes.."); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		// Heap and goroutine stacks: a subscriber is mostly its goroutine.
		heap := func() int64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return int64(m.HeapAlloc + m.StackInuse)
		}
		h0 := heap()
		c, err := cache.Open(ctx, cli, prefix)
		if err != nil {
			b.Fatal(err)
		}
		h1 := heap()
		sctx, cancel := context.WithCancel(ctx)
		for range subscribers {
			<-c.Subscribe(sctx)
		}
		h2 := heap()
		g := runtime.NumGoroutine()
		b.ReportMetric(float64(h1-h0)/keys, "B/key")
		b.ReportMetric(float64(h2-h1)/subscribers, "B/subscriber")
		b.ReportMetric(float64(g), "goroutines")
		cancel()
		c.Close()
	}
}
