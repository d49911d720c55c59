package mutex_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// The benchmarks compare this package with etcd's concurrency.Mutex on one
// embedded member with fsync, started by the benchmark, so that both pay
// the same for a write.
//
//	go test ./mutex -run '^$' -bench . -benchtime 2000x

// locker is one contender: a session and a mutex, of either package.
type locker interface {
	lock(ctx context.Context) error
	unlock(ctx context.Context) error
}

type ours struct {
	m *mutex.Mutex
	l *mutex.Lock
}

func (o *ours) lock(ctx context.Context) (err error) {
	o.l, err = o.m.Lock(ctx)
	return err
}

func (o *ours) unlock(ctx context.Context) error { return o.l.Unlock(ctx) }

type theirs struct{ m *concurrency.Mutex }

func (e *theirs) lock(ctx context.Context) error   { return e.m.Lock(ctx) }
func (e *theirs) unlock(ctx context.Context) error { return e.m.Unlock(ctx) }

// implementations makes a contender of each package, each on its own client
// and session.
var implementations = []struct {
	name string
	make func(b *testing.B, srv *embedded.Server, prefix string) locker
}{
	{"lockstep", func(b *testing.B, srv *embedded.Server, prefix string) locker {
		cli := testutil.BenchClient(b, srv)
		s, err := lockstep.NewSession(context.Background(), cli)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		m, err := mutex.New(s, prefix)
		if err != nil {
			b.Fatal(err)
		}
		return &ours{m: m}
	}},
	{"etcd", func(b *testing.B, srv *embedded.Server, prefix string) locker {
		s, err := concurrency.NewSession(testutil.BenchClient(b, srv))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return &theirs{m: concurrency.NewMutex(s, prefix)}
	}},
}

// BenchmarkUncontended measures Lock followed by Unlock with nobody else
// around.
func BenchmarkUncontended(b *testing.B) {
	srv := testutil.FsyncServer(b)
	for i, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			c := impl.make(b, srv, fmt.Sprintf("/bench/uncontended-%d", i))
			ctx := context.Background()
			samples := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := c.lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := c.unlock(ctx); err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start))
			}
			b.StopTimer()
			testutil.ReportLatency(b, "", samples)
		})
	}
}

// BenchmarkUncontendedInterleaved runs one lockstep and one etcd
// Lock+Unlock in turn, alternating which goes first, on one server: the
// two means then share every drift of the machine and the server, which
// separate sub-benchmarks do not. It reports the ratios of the means
// (lockstep / etcd) of the pair, of Lock alone and of Unlock alone.
func BenchmarkUncontendedInterleaved(b *testing.B) {
	srv := testutil.FsyncServer(b)
	ctx := context.Background()
	cs := []locker{
		implementations[0].make(b, srv, "/bench/interleaved-lockstep"),
		implementations[1].make(b, srv, "/bench/interleaved-etcd"),
	}
	var locks, unlocks [2][]time.Duration
	for i := range b.N {
		for j := range cs {
			k := (i + j) % len(cs)
			start := time.Now()
			if err := cs[k].lock(ctx); err != nil {
				b.Fatal(err)
			}
			locked := time.Now()
			if err := cs[k].unlock(ctx); err != nil {
				b.Fatal(err)
			}
			locks[k] = append(locks[k], locked.Sub(start))
			unlocks[k] = append(unlocks[k], time.Since(locked))
		}
	}
	ratio := func(ours, theirs []time.Duration) float64 {
		return float64(testutil.Mean(ours)) / float64(testutil.Mean(theirs))
	}
	pair := func(k int) time.Duration { return testutil.Mean(locks[k]) + testutil.Mean(unlocks[k]) }
	b.ReportMetric(float64(pair(0).Microseconds())/1e3, "lockstep-mean-ms")
	b.ReportMetric(float64(pair(1).Microseconds())/1e3, "etcd-mean-ms")
	b.ReportMetric(float64(pair(0))/float64(pair(1)), "ratio")
	b.ReportMetric(ratio(locks[0], locks[1]), "lock-ratio")
	b.ReportMetric(ratio(unlocks[0], unlocks[1]), "unlock-ratio")
}

// BenchmarkHandoff measures, with 8 sessions contending, the time from the
// holder's Unlock call to the next holder's Lock returning. Each iteration
// is one handoff.
func BenchmarkHandoff(b *testing.B) {
	const contenders = 8
	srv := testutil.FsyncServer(b)
	for i, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			prefix := fmt.Sprintf("/bench/handoff-%d", i)
			cs := make([]locker, contenders)
			for j := range cs {
				cs[j] = impl.make(b, srv, prefix)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()

			var (
				unlockAt atomic.Int64 // when the last holder called Unlock, unix ns
				handoffs atomic.Int64
				mu       sync.Mutex
				samples  = make([]time.Duration, 0, b.N)
				errs     = make(chan error, contenders)
				wg       sync.WaitGroup
			)
			b.ResetTimer()
			for _, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if err := c.lock(ctx); err != nil {
							errs <- err
							return
						}
						now := time.Now()
						if at := unlockAt.Load(); at != 0 {
							mu.Lock()
							samples = append(samples, now.Sub(time.Unix(0, at)))
							mu.Unlock()
						}
						done := handoffs.Add(1) > int64(b.N)
						unlockAt.Store(time.Now().UnixNano())
						if err := c.unlock(ctx); err != nil {
							errs <- err
							return
						}
						if done {
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			testutil.ReportLatency(b, "", samples)
		})
	}
}
