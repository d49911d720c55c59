package election_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/embedded"
)

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

	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	e, err := election.New(s, "/elect/indexer")
	if err != nil {
		log.Fatal(err)
	}

	term, err := e.Campaign(ctx, "node-a") // blocks until leader
	if err != nil {
		log.Fatal(err)
	}
	if err := term.Proclaim(ctx, "node-a:v2"); err != nil {
		log.Fatal(err)
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", ld.Value, ld.Token == term.Token())

	if err := term.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("term ended:", term.Err())
	_, err = e.Leader(ctx)
	fmt.Println("no leader:", errors.Is(err, election.ErrNoLeader))
	// Output:
	// leader: node-a:v2 true
	// term ended: lockstep: released
	// no leader: true
}

// Observe reports the current leader first, then every change, including
// "no leader" (the zero Leader).
func ExampleElection_Observe() {
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
	candidate := func() (*election.Election, *lockstep.Session) {
		s, err := lockstep.NewSession(ctx, cli)
		if err != nil {
			log.Fatal(err)
		}
		e, err := election.New(s, "/elect/indexer")
		if err != nil {
			log.Fatal(err)
		}
		return e, s
	}
	a, sa := candidate()
	defer sa.Close()
	b, sb := candidate()
	defer sb.Close()

	octx, stop := context.WithCancel(ctx)
	changes := a.Observe(octx)
	show := func() {
		if ld := <-changes; ld.Token == 0 {
			fmt.Println("no leader")
		} else {
			fmt.Println("leader:", ld.Value)
		}
	}
	show()

	ta, err := a.Campaign(ctx, "node-a")
	if err != nil {
		log.Fatal(err)
	}
	show()
	elected := make(chan *election.Term)
	go func() {
		tb, err := b.Campaign(ctx, "node-b") // waits behind node-a
		if err != nil {
			log.Fatal(err)
		}
		elected <- tb
	}()
	waitCandidates(ctx, cli, "/elect/indexer", 2) // node-b is queued
	ta.Resign(ctx)
	show()
	(<-elected).Resign(ctx)
	show()

	stop()
	for range changes { // closed once the observer has stopped
	}
	// Output:
	// no leader
	// leader: node-a
	// leader: node-b
	// no leader
}

// waitCandidates waits until the election has n candidates.
func waitCandidates(ctx context.Context, cli *clientv3.Client, prefix string, n int64) {
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			log.Fatal(err)
		}
		if resp.Count == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// A leader fences its writes to etcd with IsOwner: once its term is over,
// the write is refused by the server.
func ExampleTerm_IsOwner() {
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
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	e, err := election.New(s, "/elect/indexer")
	if err != nil {
		log.Fatal(err)
	}
	term, err := e.Campaign(ctx, "node-a")
	if err != nil {
		log.Fatal(err)
	}
	write := func() bool {
		resp, err := cli.Txn(ctx).
			If(term.IsOwner()).
			Then(clientv3.OpPut("/index/version", fmt.Sprint(term.Token()))).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		return resp.Succeeded
	}
	fmt.Println("write as leader:", write())
	term.Resign(ctx)
	fmt.Println("write after resign:", write())
	// Output:
	// write as leader: true
	// write after resign: false
}
