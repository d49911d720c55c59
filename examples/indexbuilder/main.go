// Command indexbuilder runs three replicas of an index builder, of which
// only the leader builds (package leaderjob). The leader crashes; another
// replica takes over when the crashed one's lease expires, and the index
// it writes is fenced so that a stale leader could not overwrite it.
//
//	go run ./examples/indexbuilder                          # against an embedded etcd
//	go run ./examples/indexbuilder --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/leaderjob"
)

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/indexbuilder", "the election's name; the index is written to PREFIX-index")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	newClient, stop, err := connect(ctx, *endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	start = time.Now()
	var wg sync.WaitGroup
	replicas := map[string]*replica{}
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		r, err := startReplica(ctx, &wg, newClient, *prefix, name)
		if err != nil {
			log.Fatal(err)
		}
		replicas[name] = r
		time.Sleep(100 * time.Millisecond) // campaign in this order
	}

	time.Sleep(time.Second)
	leader := leaderName(ctx, replicas["node-a"].runner)
	say("%s crashes: its client goes away and its lease is no longer renewed\n", leader)
	replicas[leader].cli.Close()

	// The next leader is elected once the crashed leader's lease expires
	// (2 s TTL). Let it build a little, then stop everybody cleanly.
	time.Sleep(3500 * time.Millisecond)
	for _, r := range replicas {
		r.stop()
	}
	wg.Wait()

	resp, err := replicas[otherThan(leader)].cli.Get(ctx, *prefix+"-index")
	if err != nil {
		log.Fatal(err)
	}
	if len(resp.Kvs) > 0 {
		say("the index: %q\n", resp.Kvs[0].Value)
	}
}

var (
	start = time.Now()
	outMu sync.Mutex
)

// say prints a line with the time since the start: replicas run
// concurrently.
func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf("%5.2fs  %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// replica is one index builder process: its own client, its runner.
type replica struct {
	cli    *clientv3.Client
	runner *leaderjob.Runner
	stop   context.CancelFunc
}

func startReplica(ctx context.Context, wg *sync.WaitGroup, newClient func() (*clientv3.Client, error), prefix, name string) (*replica, error) {
	cli, err := newClient()
	if err != nil {
		return nil, err
	}
	build := func(ctx context.Context, t *election.Term) error {
		say("%s is leader (token %d): building the index\n", name, t.Token())
		for version := 1; ; version++ {
			// Fenced write: etcd applies it only while this term holds,
			// so a leader that lost its term cannot overwrite the index.
			value := fmt.Sprintf("built by %s (token %d), version %d", name, t.Token(), version)
			resp, err := cli.Txn(ctx).If(t.IsOwner()).Then(clientv3.OpPut(prefix+"-index", value)).Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return fmt.Errorf("%s: term %d is over", name, t.Token())
			}
			select {
			case <-ctx.Done():
				say("%s stops building: %v\n", name, context.Cause(ctx))
				return ctx.Err()
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	runner, err := leaderjob.New(cli, prefix, build,
		leaderjob.WithIdentity(name),
		leaderjob.WithTTL(2*time.Second),
		leaderjob.WithOnNewLeader(func(l election.Leader) {
			if l.Value != name {
				say("%s sees %s leading\n", name, l.Value)
			}
		}))
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := runner.Run(rctx)
		if rctx.Err() == nil && err != nil && !strings.Contains(err.Error(), "client closed") {
			log.Printf("%s: %v", name, err)
		}
	}()
	return &replica{cli: cli, runner: runner, stop: stop}, nil
}

func leaderName(ctx context.Context, r *leaderjob.Runner) string {
	l, err := r.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	return l.Value
}

func otherThan(name string) string {
	if name == "node-a" {
		return "node-b"
	}
	return "node-a"
}

// connect returns a way to make clients of the etcd at endpoints, or of an
// embedded one started here if endpoints is empty, and a function that
// closes what connect started.
func connect(ctx context.Context, endpoints string) (func() (*clientv3.Client, error), func(), error) {
	if endpoints == "" {
		srv, err := embedded.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		return srv.Client, func() { srv.Close() }, nil
	}
	var clients []*clientv3.Client
	newClient := func() (*clientv3.Client, error) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second})
		if err == nil {
			clients = append(clients, cli)
		}
		return cli, err
	}
	return newClient, func() {
		for _, c := range clients {
			c.Close()
		}
	}, nil
}
