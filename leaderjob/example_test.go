package leaderjob_test

import (
	"context"
	"fmt"
	"log"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// A job that finishes its work returns nil: the runner resigns and Run
// returns.
func Example() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.WithoutFsync())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	buildIndex := func(ctx context.Context, t *election.Term) error {
		fmt.Println("building the index, token above zero:", t.Token() > 0)
		return nil
	}
	r, err := leaderjob.New(cli, "/elect/indexer", buildIndex, leaderjob.WithIdentity("node-a"))
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("done")
	// Output:
	// building the index, token above zero: true
	// done
}

// Two replicas: the second takes over when the first stops.
func ExampleRunner_Run() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.WithoutFsync())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	leading := make(chan string)
	job := func(ctx context.Context, t *election.Term) error {
		leading <- t.Value()
		<-ctx.Done() // work until leadership or Run ends
		return ctx.Err()
	}
	replica := func(name string) (stop func()) {
		r, err := leaderjob.New(cli, "/elect/indexer", job, leaderjob.WithIdentity(name))
		if err != nil {
			log.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		return func() {
			cancel()
			fmt.Println(name, "stopped:", <-done)
		}
	}

	stopA := replica("node-a")
	fmt.Println("leader:", <-leading)
	stopB := replica("node-b") // waits behind node-a
	stopA()                    // node-a resigns; node-b takes over at once
	fmt.Println("leader:", <-leading)
	stopB()
	// Output:
	// leader: node-a
	// node-a stopped: context canceled
	// leader: node-b
	// node-b stopped: context canceled
}
