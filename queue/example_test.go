package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/queue"
)

// startEtcd starts an embedded etcd and returns a client of it.
func startEtcd(ctx context.Context) (*clientv3.Client, func()) {
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	return cli, func() { srv.Close() }
}

// Producers enqueue with priorities; a consumer receives the most urgent
// item first (the lowest value), in arrival order within one priority, and
// acks each when its work is done.
func Example() {
	ctx := context.Background()
	cli, stop := startEtcd(ctx)
	defer stop()
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	q, err := queue.New(s, "/queue/jobs")
	if err != nil {
		log.Fatal(err)
	}
	for _, job := range []struct {
		name string
		prio int
	}{{"reindex", 5}, {"resize img-1", 0}, {"page on-call", -10}, {"resize img-2", 0}} {
		if _, err := q.Enqueue(ctx, job.name, queue.WithPriority(job.prio)); err != nil {
			log.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		it, err := q.Dequeue(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s (priority %d)\n", it.Value(), it.Priority())
		if err := it.Ack(ctx); err != nil {
			log.Fatal(err)
		}
	}
	n, err := q.Len(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("left:", n)
	// Output:
	// page on-call (priority -10)
	// resize img-1 (priority 0)
	// resize img-2 (priority 0)
	// reindex (priority 5)
	// left: 0
}

// A consumer that dies before Ack loses nothing: when its session ends, the
// item is delivered to another consumer, which sees the earlier attempt.
func Example_consumerCrash() {
	ctx := context.Background()
	cli, stop := startEtcd(ctx)
	defer stop()

	crashing, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	q1, err := queue.New(crashing, "/queue/mail")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := q1.Enqueue(ctx, "send invoice 42"); err != nil {
		log.Fatal(err)
	}
	first, err := q1.Dequeue(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("consumer 1 got:", first.Value(), "attempt", first.Attempts())
	crashing.Close() // as if the process died: its lease, and the claim, go

	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	q2, err := queue.New(s, "/queue/mail")
	if err != nil {
		log.Fatal(err)
	}
	again, err := q2.Dequeue(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("consumer 2 got:", again.Value(), "attempt", again.Attempts())
	fmt.Println("same item:", again.ID() == first.ID())
	if err := again.Ack(ctx); err != nil {
		log.Fatal(err)
	}
	err = first.Ack(ctx)
	fmt.Println("late ack of consumer 1 refused:", errors.Is(err, queue.ErrClaimLost))
	// Output:
	// consumer 1 got: send invoice 42 attempt 1
	// consumer 2 got: send invoice 42 attempt 2
	// same item: true
	// late ack of consumer 1 refused: true
}

// An item that keeps failing goes to a dead-letter queue after its last
// allowed delivery, instead of blocking the queue forever.
func ExampleWithDeadLetter() {
	ctx := context.Background()
	cli, stop := startEtcd(ctx)
	defer stop()
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	q, err := queue.New(s, "/queue/jobs", queue.WithDeadLetter("/queue/jobs-failed", 2))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "malformed job"); err != nil {
		log.Fatal(err)
	}
	for {
		it, err := q.Dequeue(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("attempt", it.Attempts(), "failed")
		if err := it.Nack(ctx); err != nil {
			log.Fatal(err)
		}
		if it.Attempts() == 2 {
			break
		}
	}
	n, _ := q.Len(ctx)
	fmt.Println("left in queue:", n)

	failed, err := queue.New(s, "/queue/jobs-failed")
	if err != nil {
		log.Fatal(err)
	}
	it, err := failed.Dequeue(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letter:", it.Value())
	if err := it.Ack(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// attempt 1 failed
	// attempt 2 failed
	// left in queue: 0
	// dead letter: malformed job
}

// A process that only adds work needs a client, not a session: nothing it
// writes is under a lease.
func ExampleNewProducer() {
	ctx := context.Background()
	cli, stop := startEtcd(ctx)
	defer stop()

	p, err := queue.NewProducer(cli, "/queue/mail")
	if err != nil {
		log.Fatal(err)
	}
	for _, mail := range []string{"invoice 41", "invoice 42"} {
		if _, err := p.Enqueue(ctx, mail); err != nil {
			log.Fatal(err)
		}
	}
	n, err := p.Len(ctx)
	if err != nil {
		log.Fatal(err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued:", n, "leases:", len(leases.Leases))
	// Output:
	// queued: 2 leases: 0
}
