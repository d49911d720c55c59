// Command workqueue runs a producer and two consumers over a durable
// priority queue (package queue). Urgent jobs are served first; one
// consumer crashes in the middle of a job, and that job is delivered again
// to the other, marked as a second attempt. Nothing is lost.
//
//	go run ./examples/workqueue                          # against an embedded etcd
//	go run ./examples/workqueue --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/queue"
)

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/workqueue", "the queue's name")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, stop, err := connect(ctx, *endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	producer, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Close()
	q, err := queue.New(producer, *prefix)
	if err != nil {
		log.Fatal(err)
	}
	jobs := []struct {
		value    string
		priority int
	}{
		{"thumbnail img-1", 0}, {"thumbnail img-2", 0}, {"weekly digest", 10},
		{"password reset mail", -5}, {"thumbnail img-3", 0}, {"fraud check order-7", -10},
	}
	for _, j := range jobs {
		if _, err := q.Enqueue(ctx, j.value, queue.WithPriority(j.priority)); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("producer: %d jobs queued; lower priority values first\n", len(jobs))

	// Consumers run until every job is acked.
	var (
		mu    sync.Mutex
		acked int
	)
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	consume := func(name string, crashOnFirst bool) error {
		s, err := lockstep.NewSession(ctx, cli, lockstep.WithTTL(2*time.Second))
		if err != nil {
			return err
		}
		defer s.Close()
		q, err := queue.New(s, *prefix)
		if err != nil {
			return err
		}
		for {
			it, err := q.Dequeue(cctx)
			if err != nil {
				if cctx.Err() != nil {
					return nil
				}
				return err
			}
			fmt.Printf("%s: %-20s priority %3d, attempt %d\n", name, it.Value(), it.Priority(), it.Attempts())
			if crashOnFirst {
				// The process dies mid-job: no Ack. Its session ends
				// (here at once; after a real crash, when the 2 s TTL runs
				// out) and the claim goes with it.
				fmt.Printf("%s: crashes while working on %q\n", name, it.Value())
				return s.Close()
			}
			time.Sleep(100 * time.Millisecond) // the work
			if err := it.Ack(ctx); err != nil {
				return err
			}
			mu.Lock()
			acked++
			if acked == len(jobs) {
				stopConsumers()
			}
			mu.Unlock()
		}
	}

	var wg sync.WaitGroup
	for _, c := range []struct {
		name  string
		crash bool
	}{{"consumer-1", false}, {"consumer-2", true}} {
		wg.Go(func() {
			if err := consume(c.name, c.crash); err != nil && !errors.Is(err, context.Canceled) {
				log.Fatalf("%s: %v", c.name, err)
			}
		})
	}
	wg.Wait()
	n, err := q.Len(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("all %d jobs done, %d left in the queue\n", len(jobs), n)
}

// connect returns a client of the etcd at endpoints, or of an embedded one
// started here if endpoints is empty, and a function that closes both.
func connect(ctx context.Context, endpoints string) (*clientv3.Client, func(), error) {
	if endpoints == "" {
		srv, err := embedded.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		cli, err := srv.Client()
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return cli, func() { srv.Close() }, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	return cli, func() { cli.Close() }, nil
}
