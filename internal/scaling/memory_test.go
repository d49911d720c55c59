package scaling_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkWaiterMemory measures what n contenders cost while one holds and
// the others wait: heap bytes and goroutines per contender, its session
// included, two seconds after they are all in line and after a garbage
// collection. The server runs in the same
// process, so its side of each session and watch is counted too; etcd's
// contenders carry the same. b.N is not used: each run measures once.
func BenchmarkWaiterMemory(b *testing.B) {
	srv := quietServer(b)
	for _, n := range sizes(b) {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/n=%d/%s", im.recipe, n, im.name), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				heap0, g0 := heapAndGoroutines()
				prefix, cs, _ := contenders(b, srv, im, n)
				if err := cs[0].acquire(ctx); err != nil {
					b.Fatal(err)
				}
				done := make(chan error, n)
				for _, c := range cs[1:] {
					go func() { done <- c.acquire(ctx) }()
				}
				queued(b, ctx, srv, prefix, n)
				heap1, g1 := heapAndGoroutines()
				b.ReportMetric(float64(heap1-heap0)/float64(n), "bytes/contender")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/contender")
				cancel()
				for range cs[1:] {
					<-done
				}
			})
		}
	}
}

// heapAndGoroutines measures once the process has settled: the last
// waiters may still be reading their place when the keys and watchers are
// all there, and what they allocate for it is garbage two seconds later.
func heapAndGoroutines() (int64, int) {
	time.Sleep(2 * time.Second)
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), runtime.NumGoroutine()
}
