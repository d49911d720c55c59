package discovery_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// serve registers one backend per weight (IDs b0, b1, ...) under service.
func serve(t *testing.T, ctx context.Context, prefix, service string, weights ...int) ([]*backend, []*discovery.Registration) {
	t.Helper()
	cli := testutil.Client(t)
	var bs []*backend
	var rs []*discovery.Registration
	for i, w := range weights {
		b := startBackend(t, fmt.Sprintf("b%d", i))
		bs = append(bs, b)
		rs = append(rs, register(t, ctx, cli, prefix,
			discovery.Instance{Service: service, ID: b.name, Addr: b.addr, Weight: w}, discovery.WithGrace(0)))
	}
	return bs, rs
}

// warm calls until every name in want has served a call.
func warm(t *testing.T, ctx context.Context, c interface{ callOnce() (string, error) }, want ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, name := range want {
		missing[name] = true
	}
	for len(missing) > 0 {
		name, err := c.callOnce()
		if err != nil {
			t.Fatalf("call while warming up: %v", err)
		}
		delete(missing, name)
	}
}

// Over whole rounds of the weights, each instance gets exactly its
// weight's share of the calls.
func TestWeightedRoundRobinShares(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	serve(t, ctx, prefix, "svc", 1, 2, 3)
	c := client{ctx, dial(t, testutil.Client(t), prefix, "svc", discovery.WeightedRoundRobin)}
	warm(t, ctx, c, "b0", "b1", "b2")
	got := map[string]int{}
	for range 600 {
		name, err := c.callOnce()
		if err != nil {
			t.Fatal(err)
		}
		got[name]++
	}
	if got["b0"] != 100 || got["b1"] != 200 || got["b2"] != 300 {
		t.Fatalf("calls over 600: %v, want b0:100 b1:200 b2:300", got)
	}
}

// A drained instance gets no new calls while a serving one exists, and
// draining, closing and stopping it fails no call.
func TestDrainFailsNoCall(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	bs, rs := serve(t, ctx, prefix, "svc", 1, 1)
	cli := testutil.Client(t)
	c := client{ctx, dial(t, cli, prefix, "svc", discovery.WeightedRoundRobin)}
	warm(t, ctx, c, "b0", "b1")
	w := watch(t, ctx, cli, prefix, "svc")

	var failed, calls atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, err := c.callOnce(); err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
				}
			}
		}()
	}
	if err := rs[0].Drain(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, w, "b0 draining", func(list []discovery.Instance) bool {
		in, ok := find(list, "b0")
		return ok && in.Status == discovery.Draining
	})
	// The client's cache is the watcher's: once the watcher has the drain,
	// so has the resolver's watch; wait for gRPC to stop routing to b0.
	for {
		before := bs[0].calls.Load()
		for range 40 {
			if _, err := c.callOnce(); err != nil {
				t.Fatal(err)
			}
		}
		if bs[0].calls.Load() == before {
			break // 40 calls here, more from the callers, none to b0
		}
		if ctx.Err() != nil {
			t.Fatal("b0 still routed to after its drain")
		}
	}
	if err := rs[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	bs[0].srv.GracefulStop()
	for range 200 {
		if _, err := c.callOnce(); err != nil {
			t.Fatalf("call after b0 stopped: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		var errs []string
		failures.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
		t.Fatalf("%d of %d calls failed during the drain: %v", n, calls.Load(), errs)
	}
}

// A draining instance still serves when no serving one is left.
func TestDrainingServesWhenNoneServes(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	_, rs := serve(t, ctx, prefix, "svc", 1)
	c := client{ctx, dial(t, testutil.Client(t), prefix, "svc", discovery.WeightedRoundRobin)}
	warm(t, ctx, c, "b0")
	if err := rs[0].Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if name, err := c.callOnce(); err != nil || name != "b0" {
			t.Fatalf("call with only a draining instance: %q %v", name, err)
		}
	}
}

// With a zone preferred, calls go to its instances while one is there,
// and to the others once none is.
func TestZonePreference(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	var rs []*discovery.Registration
	for i, zone := range []string{"z1", "z2"} {
		b := startBackend(t, zone)
		rs = append(rs, register(t, ctx, cli, prefix,
			discovery.Instance{Service: "svc", ID: fmt.Sprint(i), Addr: b.addr, Zone: zone}, discovery.WithGrace(0)))
	}
	c := client{ctx, dial(t, testutil.Client(t), prefix, "svc", discovery.WeightedRoundRobinIn("z2"))}
	warm(t, ctx, c, "z2")
	for range 50 {
		if name, err := c.callOnce(); err != nil || name != "z2" {
			t.Fatalf("call with z2 preferred: %q %v", name, err)
		}
	}
	if err := rs[1].Close(ctx); err != nil {
		t.Fatal(err)
	}
	warm(t, ctx, c, "z1")
}

// A service with no instances fails calls at once with Unavailable
// instead of holding them until their deadline.
func TestEmptyServiceFailsFast(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	c := client{ctx, dial(t, testutil.Client(t), prefix, "nobody", discovery.WeightedRoundRobin)}
	_, err := c.callOnce()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call to a service with no instances: %v, want Unavailable", err)
	}
}

// A call that waits for ready waits for an instance of an empty service
// instead of failing at once.
func TestWaitForReadyWaitsForAnInstance(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t)
	conn := dial(t, testutil.Client(t), prefix, "svc", discovery.WeightedRoundRobin)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the call find the service empty
	serve(t, ctx, prefix, "svc", 1)
	if err := <-done; err != nil {
		t.Fatalf("a wait-for-ready call: %v", err)
	}
}
