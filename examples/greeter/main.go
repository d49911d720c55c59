// Command greeter runs three gRPC backends of a greeter service,
// registered in etcd with weights 1, 2 and 3 (package discovery), and a
// client that dials lockstep:///greeter and calls it from a few
// goroutines: the calls are shared by weight. Then one backend crashes:
// the client routes around it as soon as its connections break, and its
// registration goes when its lease expires. Another drains and leaves
// while the calls go on, and not one call fails. The program exits
// non-zero if a call fails that should not, if calls reach the drained
// backend after the client has seen its drain, or if the shares are off.
//
//	go run ./examples/greeter                          # against an embedded etcd
//	go run ./examples/greeter --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/embedded"
)

const (
	workers = 4    // goroutines calling the greeter
	window  = 1200 // calls over which shares are measured
	grace   = time.Second
)

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/greeter", "the registry's prefix; instances go under PREFIX/greeter/")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := run(ctx, *endpoints, *prefix)
	cancel()
	if err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, endpoints, prefix string) error {
	began := time.Now()
	newClient, closeClients, err := connect(ctx, endpoints)
	if err != nil {
		return err
	}
	defer closeClients()
	var (
		backends []*backend
		l        *load
		conn     *grpc.ClientConn
	)
	// The orderly shutdown is at the end; this one is for an early return.
	defer func() {
		if l != nil {
			l.stop()
		}
		if conn != nil {
			conn.Close()
		}
		shutdown(ctx, backends)
	}()

	fmt.Printf("Three greeter backends register under %s:\n", prefix)
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		opts := []discovery.RegisterOption{discovery.WithGrace(grace)}
		ttl := lockstep.DefaultTTL
		if name == "node-b" {
			// node-b is the one that crashes: the shortest TTL makes its
			// registration expire within seconds rather than ten.
			ttl = lockstep.MinTTL
			opts = append(opts, discovery.WithTTL(ttl))
		}
		b, err := startBackend(ctx, newClient, prefix, name, i+1, opts...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		backends = append(backends, b)
		fmt.Printf("  %s  %-15s  weight %d  lease TTL %v\n", b.name, b.addr, b.weight, ttl)
	}
	nodeA, nodeB, nodeC := backends[0], backends[1], backends[2]

	cli, err := newClient()
	if err != nil {
		return err
	}
	var seen routing // when the client's balancer took each list of instances
	conn, err = grpc.NewClient("lockstep:///greeter",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(seen.wrap(discovery.NewResolver(cli, prefix))),
		grpc.WithDefaultServiceConfig(discovery.WeightedRoundRobin))
	if err != nil {
		return err
	}
	l = startLoad(ctx, conn, backends, workers)
	fmt.Printf("A client dials lockstep:///greeter and calls it from %d goroutines until the end.\n", workers)
	var problems []string
	expect := func(ok bool, format string, args ...any) {
		if !ok {
			p := fmt.Sprintf(format, args...)
			problems = append(problems, p)
			fmt.Printf("  FAILED: %s\n", p)
		}
	}

	// Shares by weight, once every backend is connected.
	if _, err := l.wait(ctx, began, servedByAll(backends)); err != nil {
		return fmt.Errorf("waiting for every backend to serve a call: %w", err)
	}
	steady, err := l.wait(ctx, time.Now(), atLeast(window))
	if err != nil {
		return err
	}
	row("shares", shares(steady, backends))
	want := map[string]float64{nodeA.name: 1.0 / 6, nodeB.name: 2.0 / 6, nodeC.name: 3.0 / 6}
	expect(sharesNear(steady, want), "shares %s, want 1:2:3", shares(steady, backends))

	fmt.Printf("%s crashes: its server stops; its registration is left to expire.\n", nodeB.name)
	crashed := time.Now()
	if err := nodeB.crash(ctx); err != nil {
		return fmt.Errorf("%s: crash: %w", nodeB.name, err)
	}
	dropped, err := seen.wait(ctx, crashed, func(list []discovery.Instance) bool {
		_, ok := find(list, nodeB.name)
		return !ok
	})
	if err != nil {
		return fmt.Errorf("waiting for %s's registration to expire: %w", nodeB.name, err)
	}
	afterCrash, err := l.wait(ctx, dropped, atLeast(window))
	if err != nil {
		return err
	}
	var sentAfter, inCrash, failed, failedOnB int
	var lastSent time.Duration
	for _, c := range l.since(crashed, dropped) {
		if c.backend == nodeB.name {
			sentAfter++
			lastSent = c.start.Sub(crashed)
		}
	}
	for _, c := range l.since(time.Time{}, dropped) {
		if !c.end.After(crashed) {
			continue
		}
		inCrash++
		if c.err != nil {
			failed++
			if c.backend == nodeB.name {
				failedOnB++
			}
		}
	}
	if sentAfter == 0 {
		row("routing to it stopped", "at once: no call was sent to it after the crash")
	} else {
		row("routing to it stopped", fmt.Sprintf("%v after the crash; calls sent to it meanwhile: %d", round(lastSent), sentAfter))
	}
	switch {
	case failed > 0 && failedOnB == failed:
		row("calls failed", fmt.Sprintf("%d of %d, all sent to %s", failed, inCrash, nodeB.name))
	default:
		row("calls failed", fmt.Sprintf("%d of %d", failed, inCrash))
	}
	row("dropped from the list", fmt.Sprintf("%v after the crash, when its lease expired (TTL %v)", round(dropped.Sub(crashed)), lockstep.MinTTL))
	row("shares afterwards", shares(afterCrash, backends))
	want = map[string]float64{nodeA.name: 1.0 / 4, nodeC.name: 3.0 / 4}
	expect(sharesNear(afterCrash, want), "shares %s after the crash, want 1:0:3", shares(afterCrash, backends))

	fmt.Printf("%s drains and leaves while the calls go on: Close with a %v grace period, then its server stops.\n", nodeC.name, grace)
	draining := time.Now()
	if err := nodeC.stop(ctx); err != nil {
		return fmt.Errorf("%s: close: %w", nodeC.name, err)
	}
	left := time.Now()
	drainSeen, err := seen.wait(ctx, draining, func(list []discovery.Instance) bool {
		in, ok := find(list, nodeC.name)
		return !ok || in.Status == discovery.Draining
	})
	if err != nil {
		return err
	}
	afterDrain, err := l.wait(ctx, left, atLeast(window))
	if err != nil {
		return err
	}
	during := l.since(draining, left)
	var late int
	for _, c := range l.since(drainSeen, time.Time{}) {
		if c.start.After(drainSeen) && c.backend == nodeC.name {
			late++
		}
	}
	row("drain seen by the client", fmt.Sprintf("%v after Close began", round(drainSeen.Sub(draining))))
	row("Close and stop took", round(left.Sub(draining)).String())
	row(fmt.Sprintf("calls to %s after that", nodeC.name), fmt.Sprint(late))
	row("calls failed", fmt.Sprintf("%d of %d", failures(during), len(during)))
	row("shares during the drain", shares(during, backends))
	row("shares afterwards", shares(afterDrain, backends))
	expect(late == 0, "%d calls reached %s after the client had seen its drain", late, nodeC.name)
	expect(sharesNear(afterDrain, map[string]float64{nodeA.name: 1}), "shares %s after the drain, want 1:0:0", shares(afterDrain, backends))

	// Every failure must be the crash's: a call in flight on node-b when it
	// died, or one sent to it before the client saw its connections break.
	l.stop()
	all := l.since(time.Time{}, time.Time{})
	var stray int
	for _, c := range all {
		if c.err != nil && (c.end.Before(crashed) || c.start.After(dropped)) {
			stray++
		}
	}
	expect(stray == 0, "%d calls failed outside the crash (%d failed in all)", stray, failures(all))

	fmt.Println("The client stops, then node-a, drained as node-c was.")
	conn.Close()
	if err := shutdown(ctx, backends); err != nil {
		return err
	}
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	row("calls made", fmt.Sprintf("%d, %d failed", len(all), failures(all)))
	row("registrations left", fmt.Sprint(resp.Count))
	expect(resp.Count == 0, "%d registrations left under %s", resp.Count, prefix)
	row("time", round(time.Since(began)).String())
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// shutdown stops every backend under a context of its own, so that it
// runs even when ctx has ended.
func shutdown(ctx context.Context, backends []*backend) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var errs []error
	for _, b := range backends {
		if err := b.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
		}
	}
	return errors.Join(errs...)
}

func row(label, value string) { fmt.Printf("  %-28s %s\n", label, value) }

func round(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

func atLeast(n int) func([]call) bool { return func(calls []call) bool { return len(calls) >= n } }

func servedByAll(backends []*backend) func([]call) bool {
	return func(calls []call) bool {
		served := map[string]bool{}
		for _, c := range calls {
			if c.err == nil {
				served[c.backend] = true
			}
		}
		for _, b := range backends {
			if !served[b.name] {
				return false
			}
		}
		return true
	}
}

func failures(calls []call) int {
	n := 0
	for _, c := range calls {
		if c.err != nil {
			n++
		}
	}
	return n
}

// shares formats each backend's share of the calls that succeeded.
func shares(calls []call, backends []*backend) string {
	count, total := served(calls)
	var b strings.Builder
	for _, be := range backends {
		fmt.Fprintf(&b, "%s %5.1f%%   ", be.name, 100*float64(count[be.name])/float64(max(total, 1)))
	}
	fmt.Fprintf(&b, "of %d calls", total)
	return b.String()
}

func served(calls []call) (map[string]int, int) {
	count, total := map[string]int{}, 0
	for _, c := range calls {
		if c.err == nil {
			count[c.backend]++
			total++
		}
	}
	return count, total
}

// sharesNear reports whether every backend's share is within 5 points of
// want (absent: 0). Smooth weighted round-robin gives each backend its
// exact weight in every run of picks as long as the weights' sum, so the
// margin is only for the calls in flight at the window's edges.
func sharesNear(calls []call, want map[string]float64) bool {
	count, total := served(calls)
	if total == 0 {
		return false
	}
	for name := range want {
		if _, ok := count[name]; !ok {
			count[name] = 0 // wanted but not served: checked below too
		}
	}
	for name, n := range count {
		if math.Abs(float64(n)/float64(total)-want[name]) > 0.05 {
			return false
		}
	}
	return true
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
