package barrier_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/embedded"
)

// A coordinator holds a gate while it prepares a deploy; workers wait at
// the gate and all go when it is released.
func ExampleBarrier() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	gate, err := barrier.New(cli, "/barrier/deploy")
	if err != nil {
		log.Fatal(err)
	}
	hold, err := gate.Hold(ctx)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gate.Wait(ctx); err != nil {
			log.Fatal(err)
		}
		fmt.Println("worker: the deploy may start")
	}()
	fmt.Println("coordinator: ready, releasing")
	if err := hold.Release(ctx); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// coordinator: ready, releasing
	// worker: the deploy may start
}

// Three workers process batches together: none starts batch 2 before all
// have finished batch 1. The same DoubleBarrier serves every batch.
func ExampleDoubleBarrier() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	const workers, batches = 3, 2
	var (
		mu        sync.Mutex
		processed []string
		wg        sync.WaitGroup
	)
	for range workers {
		s, err := lockstep.NewSession(ctx, cli)
		if err != nil {
			log.Fatal(err)
		}
		defer s.Close()
		d, err := barrier.NewDouble(s, "/barrier/batch", workers)
		if err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			for batch := 1; batch <= batches; batch++ {
				if err := d.Enter(ctx); err != nil {
					log.Fatal(err)
				}
				mu.Lock() // process the batch
				processed = append(processed, fmt.Sprintf("batch %d by a worker", batch))
				mu.Unlock()
				if err := d.Leave(ctx); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	fmt.Println(strings.Join(processed, "\n"))
	// Output:
	// batch 1 by a worker
	// batch 1 by a worker
	// batch 1 by a worker
	// batch 2 by a worker
	// batch 2 by a worker
	// batch 2 by a worker
}
