package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/semaphore"
)

// At most 3 of 10 workers call a fragile dependency at once.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			// One session per worker process; here, per goroutine.
			s, err := lockstep.NewSession(ctx, cli)
			if err != nil {
				log.Fatal(err)
			}
			defer s.Close()
			sem, err := semaphore.New(s, "/sem/payments-api", 3)
			if err != nil {
				log.Fatal(err)
			}
			p, err := sem.Acquire(ctx)
			if err != nil {
				log.Fatal(err)
			}
			defer p.Release(ctx)

			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(10 * time.Millisecond) // call the dependency
			inside.Add(-1)
		})
	}
	wg.Wait()
	fmt.Println("never more than 3 at once:", most.Load() <= 3)
	// Output: never more than 3 at once: true
}

// TryAcquire does not wait; a permit fences writes to etcd through IsOwner.
func ExampleSemaphore_TryAcquire() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	sem, err := semaphore.New(s, "/sem/reindex", 1)
	if err != nil {
		log.Fatal(err)
	}
	p, err := sem.TryAcquire(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := sem.TryAcquire(ctx); errors.Is(err, semaphore.ErrNoPermit) {
		fmt.Println("second TryAcquire: no permit")
	}

	// The write happens only if the permit is still held when etcd applies it.
	resp, err := cli.Txn(ctx).If(p.IsOwner()).Then(clientv3.OpPut("/reindex/state", "running")).Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fenced write applied:", resp.Succeeded)

	if err := p.Release(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Err())
	// Output:
	// second TryAcquire: no permit
	// fenced write applied: true
	// lockstep: released
}

// Clients must agree on the limit; a client with another one is refused
// while the first one's keys exist.
func ExampleSemaphore_Acquire_limitMismatch() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	three, _ := semaphore.New(s, "/sem/db", 3)
	five, _ := semaphore.New(s, "/sem/db", 5)
	p, err := three.Acquire(ctx)
	if err != nil {
		log.Fatal(err)
	}
	_, err = five.Acquire(ctx)
	fmt.Println(errors.Is(err, semaphore.ErrLimitMismatch))

	// Once nobody holds or waits, the new limit can take over.
	p.Release(ctx)
	q, err := five.Acquire(ctx)
	fmt.Println(err)
	q.Release(ctx)
	// Output:
	// true
	// <nil>
}
