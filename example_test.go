package lockstep_test

import (
	"context"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
)

// A session's lease carries everything it owns: a key written with the
// session's lease disappears when the session is closed.
func ExampleNewSession() {
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

	s, err := lockstep.NewSession(ctx, cli, lockstep.WithTTL(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/workers/a", "alive", clientv3.WithLease(s.Lease())); err != nil {
		log.Fatal(err)
	}
	s.Close()

	resp, err := cli.Get(ctx, "/workers/a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("keys left after Close:", resp.Count)
	fmt.Println("session:", s.Err())
	// Output:
	// keys left after Close: 0
	// session: lockstep: session closed
}

// Stop work when the session is lost: Done closes before the server can
// expire the lease, so no one else can have been granted what it held.
func ExampleSession_Done() {
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

	work := time.NewTimer(10 * time.Millisecond)
	defer work.Stop()
	select {
	case <-s.Done():
		fmt.Println("stopped:", s.Err())
	case <-work.C:
		fmt.Println("work finished while the session held")
	}
	// Output:
	// work finished while the session held
}
