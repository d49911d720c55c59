package queue_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/queue"
)

// BenchmarkQueue compares lockstep's queue with etcd's recipe.PriorityQueue
// on one embedded etcd member with fsync, in the same run:
//
//   - enqueue: producers enqueue b.N items with random priorities (0..7);
//   - drain: consumers drain b.N items enqueued beforehand. lockstep's
//     consumers Dequeue and Ack each item (two writes and a read: claim,
//     ack, head read); the recipe's Dequeue deletes the item as it reads it
//     (one read and one write), so an item is lost if its consumer crashes,
//     and there is nothing to ack.
//
// Every run uses a fresh prefix and starts from a compacted store, so that
// keys deleted by earlier runs cost neither side anything. Each result
// reports items/s; the ratios lockstep/recipe and 8 consumers/1 consumer are
// logged at the end.
func BenchmarkQueue(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	env := &benchEnv{srv: srv, rates: map[string]float64{}}
	defer env.closeClients()

	for _, producers := range []int{1, 8} {
		name := fmt.Sprintf("enqueue/producers=%d", producers)
		b.Run("lockstep/"+name, func(b *testing.B) { env.enqueue(b, name, producers, lockstepImpl) })
		b.Run("recipe/"+name, func(b *testing.B) { env.enqueue(b, name, producers, recipeImpl) })
	}
	for _, consumers := range []int{1, 8} {
		name := fmt.Sprintf("drain/consumers=%d", consumers)
		b.Run("lockstep/"+name, func(b *testing.B) { env.drain(b, name, consumers, lockstepImpl) })
		b.Run("recipe/"+name, func(b *testing.B) { env.drain(b, name, consumers, recipeImpl) })
	}
	env.logRatios(b)
}

type impl string

const (
	lockstepImpl impl = "lockstep"
	recipeImpl   impl = "recipe"
)

type benchEnv struct {
	srv     *embedded.Server
	clients []*clientv3.Client
	prefix  atomic.Int64

	mu    sync.Mutex
	rates map[string]float64 // items/s of the last run of each benchmark
}

func (e *benchEnv) client(b *testing.B) *clientv3.Client {
	cli, err := clientv3.New(e.srv.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	e.clients = append(e.clients, cli)
	return cli
}

func (e *benchEnv) closeClients() {
	for _, c := range e.clients {
		c.Close()
	}
}

func (e *benchEnv) nextPrefix() string { return fmt.Sprintf("/bench/q%d", e.prefix.Add(1)) }

// compact compacts the store at its current revision and waits until the
// deleted keys are gone from the index.
func (e *benchEnv) compact(b *testing.B, cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		b.Fatal(err)
	}
}

func (e *benchEnv) record(b *testing.B, key string, n int) {
	rate := float64(n) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "items/s")
	e.mu.Lock()
	e.rates[key] = rate
	e.mu.Unlock()
}

// producer enqueues one item with a priority from 0 to 7.
type producer func(ctx context.Context, value string, prio int) error

func (e *benchEnv) producers(b *testing.B, which impl, prefix string, n int) []producer {
	ps := make([]producer, n)
	for i := range ps {
		cli := e.client(b)
		switch which {
		case lockstepImpl:
			s, err := lockstep.NewSession(context.Background(), cli)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			q, err := queue.New(s, prefix)
			if err != nil {
				b.Fatal(err)
			}
			ps[i] = func(ctx context.Context, v string, p int) error {
				_, err := q.Enqueue(ctx, v, queue.WithPriority(p))
				return err
			}
		case recipeImpl:
			q := recipe.NewPriorityQueue(cli, prefix)
			ps[i] = func(_ context.Context, v string, p int) error { return q.Enqueue(v, uint16(p)) }
		}
	}
	return ps
}

// fill has the producers enqueue n items between them.
func fill(ctx context.Context, ps []producer, n int) error {
	var next atomic.Int64
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					errs <- nil
					return
				}
				if err := p(ctx, fmt.Sprintf("item-%d", i), rand.IntN(8)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range ps {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (e *benchEnv) enqueue(b *testing.B, name string, producers int, which impl) {
	ctx := context.Background()
	prefix := e.nextPrefix()
	ps := e.producers(b, which, prefix, producers)
	e.compact(b, e.client(b))
	b.ResetTimer()
	if err := fill(ctx, ps, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	e.record(b, string(which)+"/"+name, b.N)
}

func (e *benchEnv) drain(b *testing.B, name string, consumers int, which impl) {
	ctx := context.Background()
	prefix := e.nextPrefix()
	if err := fill(ctx, e.producers(b, lockstepOrRecipe(which), prefix, 8), b.N); err != nil {
		b.Fatal(err)
	}
	// Consumers and their sessions are ready before the clock starts.
	take := make([]func() error, consumers)
	for i := range take {
		cli := e.client(b)
		switch which {
		case lockstepImpl:
			s, err := lockstep.NewSession(ctx, cli)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			q, err := queue.New(s, prefix)
			if err != nil {
				b.Fatal(err)
			}
			take[i] = func() error {
				it, err := q.Dequeue(ctx)
				if err != nil {
					return err
				}
				return it.Ack(ctx)
			}
		case recipeImpl:
			q := recipe.NewPriorityQueue(cli, prefix)
			take[i] = func() error { _, err := q.Dequeue(); return err }
		}
	}
	e.compact(b, e.client(b))
	var left atomic.Int64
	left.Store(int64(b.N))
	errs := make(chan error, consumers)
	b.ResetTimer()
	for _, t := range take {
		go func() {
			for left.Add(-1) >= 0 {
				if err := t(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range take {
		if err := <-errs; err != nil {
			b.Error(err)
		}
	}
	b.StopTimer()
	e.record(b, string(which)+"/"+name, b.N)
}

// lockstepOrRecipe: each implementation drains items it enqueued itself.
func lockstepOrRecipe(which impl) impl { return which }

func (e *benchEnv) logRatios(b *testing.B) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rates
	for _, name := range []string{"enqueue/producers=1", "enqueue/producers=8", "drain/consumers=1", "drain/consumers=8"} {
		if r["recipe/"+name] > 0 {
			b.Logf("%-22s lockstep %8.0f items/s, recipe %8.0f items/s, lockstep/recipe %.2f",
				name, r["lockstep/"+name], r["recipe/"+name], r["lockstep/"+name]/r["recipe/"+name])
		}
	}
	for _, which := range []impl{lockstepImpl, recipeImpl} {
		if one := r[string(which)+"/drain/consumers=1"]; one > 0 {
			b.Logf("%-8s drain: 8 consumers / 1 consumer = %.2f", which, r[string(which)+"/drain/consumers=8"]/one)
		}
	}
}
