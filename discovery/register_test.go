package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The key holds etcd naming's JSON with lockstep's fields in Metadata,
// under a lease; Close deletes it.
func TestRegisterWritesNamingJSONUnderALease(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	r := register(t, ctx, cli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:8080",
		Weight: 3, Zone: "z1", Version: "v2", Metadata: map[string]string{"k": "v"}}, discovery.WithGrace(0))
	if want := prefix + "/svc/a"; r.Key() != want {
		t.Fatalf("Key = %q, want %q", r.Key(), want)
	}
	resp, err := cli.Get(ctx, r.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get %s: %v %v", r.Key(), resp, err)
	}
	kv := resp.Kvs[0]
	if kv.Lease == 0 {
		t.Fatal("the instance's key has no lease")
	}
	var got struct {
		Op       int
		Addr     string
		Metadata struct {
			ID       string            `json:"id"`
			Weight   int               `json:"weight"`
			Zone     string            `json:"zone"`
			Version  string            `json:"version"`
			Status   string            `json:"status"`
			Metadata map[string]string `json:"metadata"`
		}
	}
	if err := json.Unmarshal(kv.Value, &got); err != nil {
		t.Fatalf("value %s: %v", kv.Value, err)
	}
	md := got.Metadata
	if got.Op != 0 || got.Addr != "127.0.0.1:8080" || md.ID != "a" || md.Weight != 3 || md.Zone != "z1" ||
		md.Version != "v2" || md.Status != "serving" || md.Metadata["k"] != "v" {
		t.Fatalf("value %s", kv.Value)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if resp, err := cli.Get(ctx, r.Key()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("after Close: %v %v", resp.Kvs, err)
	}
	if ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err != nil || ttl.TTL != -1 {
		t.Fatalf("the lease after Close: %+v %v, want revoked", ttl, err)
	}
	if ok, err := r.Registered(); ok || !errors.Is(err, discovery.ErrClosed) {
		t.Fatalf("Registered after Close: %v %v", ok, err)
	}
	if err := r.Update(ctx, func(*discovery.Instance) {}); !errors.Is(err, discovery.ErrClosed) {
		t.Fatalf("Update after Close: %v, want ErrClosed", err)
	}
}

// Bad input is refused with a sentinel before anything is written.
func TestRegisterRefusesBadInputBeforeWriting(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	good := discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:8080"}
	with := func(fn func(*discovery.Instance)) discovery.Instance {
		in := good
		fn(&in)
		return in
	}
	for _, tc := range []struct {
		name   string
		cli    *clientv3.Client
		prefix string
		in     discovery.Instance
		opts   []discovery.RegisterOption
		want   error
	}{
		{"nil client", nil, prefix, good, nil, lockstep.ErrNilClient},
		{"empty prefix", cli, "", good, nil, lockstep.ErrInvalidPrefix},
		{"root prefix", cli, "/", good, nil, lockstep.ErrInvalidPrefix},
		{"empty service", cli, prefix, with(func(in *discovery.Instance) { in.Service = "" }), nil, discovery.ErrInvalidService},
		{"service with /", cli, prefix, with(func(in *discovery.Instance) { in.Service = "a/b" }), nil, discovery.ErrInvalidService},
		{"empty id", cli, prefix, with(func(in *discovery.Instance) { in.ID = "" }), nil, discovery.ErrInvalidID},
		{"id with /", cli, prefix, with(func(in *discovery.Instance) { in.ID = "x/y" }), nil, discovery.ErrInvalidID},
		{"no port", cli, prefix, with(func(in *discovery.Instance) { in.Addr = "127.0.0.1" }), nil, discovery.ErrInvalidAddr},
		{"bad port", cli, prefix, with(func(in *discovery.Instance) { in.Addr = "host:http" }), nil, discovery.ErrInvalidAddr},
		{"no host", cli, prefix, with(func(in *discovery.Instance) { in.Addr = ":8080" }), nil, discovery.ErrInvalidAddr},
		{"port 0", cli, prefix, with(func(in *discovery.Instance) { in.Addr = "host:0" }), nil, discovery.ErrInvalidAddr},
		{"negative weight", cli, prefix, with(func(in *discovery.Instance) { in.Weight = -1 }), nil, discovery.ErrInvalidWeight},
		{"short ttl", cli, prefix, good, []discovery.RegisterOption{discovery.WithTTL(time.Second)}, lockstep.ErrInvalidTTL},
		{"fractional ttl", cli, prefix, good, []discovery.RegisterOption{discovery.WithTTL(2500 * time.Millisecond)}, lockstep.ErrInvalidTTL},
		{"negative grace", cli, prefix, good, []discovery.RegisterOption{discovery.WithGrace(-time.Second)}, discovery.ErrInvalidOption},
	} {
		if tc.cli != nil && tc.prefix == prefix && tc.opts == nil {
			if err := tc.in.Validate(); !errors.Is(err, tc.want) {
				t.Errorf("%s: Validate: %v, want %v", tc.name, err, tc.want)
			}
		}
		r, err := discovery.Register(ctx, tc.cli, tc.prefix, tc.in, tc.opts...)
		if !errors.Is(err, tc.want) {
			if r != nil {
				r.Close(ctx)
			}
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("keys written: %v %v", resp.Count, err)
	}
	r := register(t, ctx, cli, prefix, good)
	if err := r.Update(ctx, func(in *discovery.Instance) { in.Weight = -2 }); !errors.Is(err, discovery.ErrInvalidWeight) {
		t.Fatalf("Update to a negative weight: %v", err)
	}
	if got := r.Instance().Weight; got != 0 {
		t.Fatalf("weight after a refused Update: %d", got)
	}
}

// events collects a registration's OnChange events.
func events() (chan discovery.Event, discovery.RegisterOption) {
	ch := make(chan discovery.Event, 16)
	return ch, discovery.WithOnChange(func(e discovery.Event) { ch <- e })
}

func next(t *testing.T, ctx context.Context, ch <-chan discovery.Event) discovery.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatal("no registration event")
		return discovery.Event{}
	}
}

// A lease revoked from outside (an operator, a restore) ends the session;
// the registration hears of it and registers again under a new lease.
func TestReregistersAfterItsLeaseIsRevoked(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	ch, onChange := events()
	r := register(t, ctx, cli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}, onChange)
	first := next(t, ctx, ch)
	if !first.Registered || first.Lease == 0 {
		t.Fatalf("first event %+v", first)
	}
	if _, err := cli.Revoke(ctx, first.Lease); err != nil {
		t.Fatal(err)
	}
	if lost := next(t, ctx, ch); lost.Registered || !errors.Is(lost.Err, lockstep.ErrSessionLost) {
		t.Fatalf("after the revoke: %+v, want lost with ErrSessionLost", lost)
	}
	again := next(t, ctx, ch)
	if !again.Registered || again.Lease == first.Lease {
		t.Fatalf("then: %+v, want registered under a new lease", again)
	}
	resp, err := cli.Get(ctx, r.Key())
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != again.Lease {
		t.Fatalf("the key: %v %v, want it under lease %x", resp.Kvs, err, again.Lease)
	}
}

// A key deleted or overwritten from outside is written again, under the
// same lease, without a lost event.
func TestRepairsItsKeyChangedFromOutside(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	ch, onChange := events()
	r := register(t, ctx, cli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}, onChange)
	lease := next(t, ctx, ch).Lease
	w := watch(t, ctx, cli, prefix, "svc")
	for _, change := range []func() error{
		func() error { _, err := cli.Delete(ctx, r.Key()); return err },
		func() error { _, err := cli.Put(ctx, r.Key(), `{"Op":0,"Addr":"10.0.0.1:1"}`); return err },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
		await(t, ctx, w, "the key repaired", func(list []discovery.Instance) bool {
			in, ok := find(list, "a")
			return ok && in.Addr == "127.0.0.1:1" && in.Lease == lease
		})
	}
	select {
	case e := <-ch:
		t.Fatalf("event %+v, want none", e)
	default:
	}
}

// A second registration of an ID waits while the first lives, saying why
// if its ctx ends, and takes the key once the first is closed.
func TestIDInUseUntilTheOtherCloses(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	in := discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}
	first := register(t, ctx, cli, prefix, in, discovery.WithGrace(0))
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := discovery.Register(short, cli, prefix, in)
	cancel()
	if !errors.Is(err, discovery.ErrIDInUse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register of an ID in use: %v, want ErrIDInUse and the deadline", err)
	}
	in.Addr = "127.0.0.1:2"
	done := make(chan error, 1)
	var second *discovery.Registration
	go func() {
		var err error
		second, err = discovery.Register(ctx, cli, prefix, in, discovery.WithGrace(0))
		done <- err
	}()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Register once the ID is free: %v", err)
	}
	defer second.Close(ctx)
	resp, err := cli.Get(ctx, second.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(resp, err)
	}
	var v struct{ Addr string }
	json.Unmarshal(resp.Kvs[0].Value, &v)
	if v.Addr != "127.0.0.1:2" {
		t.Fatalf("the key holds %s", resp.Kvs[0].Value)
	}
}

// A registration whose Txn was applied but whose answer was lost finds its
// own key on the retry: one key, under its lease, no ErrIDInUse.
func TestRegisterLostAnswer(t *testing.T) {
	ctx := ctxFor(t)
	lcli, loser := testutil.LosingClient(t)
	prefix := testutil.Prefix(t)
	loser.Next("Txn", testutil.TxnPuts(prefix+"/svc/"), nil)
	ch, onChange := events()
	r := register(t, ctx, lcli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}, onChange)
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d", loser.Lost())
	}
	e := next(t, ctx, ch)
	resp, err := lcli.Get(ctx, r.Key())
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != e.Lease || resp.Kvs[0].Version != 1 {
		t.Fatalf("the key: %v %v; want one write under lease %x", resp.Kvs, err, e.Lease)
	}
}

// WithHealth reports SERVING only while the instance is registered and
// serving: NOT_SERVING while its registration is lost, once it drains and
// after Close.
func TestHealthFollowsTheRegistration(t *testing.T) {
	ctx := ctxFor(t)
	lcli, loser := testutil.LosingClient(t)
	prefix := testutil.Prefix(t)
	hs := health.NewServer()
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hs.Check(ctx, &healthpb.HealthCheckRequest{Service: "greeter"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	ch, onChange := events()
	r := register(t, ctx, lcli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"},
		onChange, discovery.WithHealth(hs, "greeter"), discovery.WithGrace(0))
	lease := next(t, ctx, ch).Lease
	if got := status(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("registered: %v", got)
	}
	loser.Outage("LeaseGrant", nil, time.Hour) // no new session until Clear
	if _, err := lcli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ctx, ch); e.Registered {
		t.Fatalf("after the revoke: %+v", e)
	}
	if got := status(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("registration lost: %v", got)
	}
	loser.Clear()
	if e := next(t, ctx, ch); !e.Registered {
		t.Fatalf("after the outage: %+v", e)
	}
	if got := status(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("registered again: %v", got)
	}
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("draining: %v", got)
	}
	r.Close(ctx)
	if got := status(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("closed: %v", got)
	}
}

// Close with etcd refusing every write gives the drain up after the grace
// period and an attempt's time, and stops, instead of waiting for ctx.
func TestCloseWhileEtcdRefusesWrites(t *testing.T) {
	ctx := ctxFor(t)
	lcli, loser := testutil.LosingClient(t)
	r := register(t, ctx, lcli, testutil.Prefix(t), discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"},
		discovery.WithGrace(500*time.Millisecond))
	loser.Outage("Txn", nil, time.Hour)
	defer loser.Clear()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ok, _ := r.Registered(); ok {
		t.Fatal("registered after Close")
	}
}

// A registration whose etcd client is closed reports the loss once and
// stops trying; Close returns at once.
func TestRegistrationStopsWhenItsClientCloses(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	ch, onChange := events()
	r := register(t, ctx, cli, testutil.Prefix(t), discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}, onChange)
	next(t, ctx, ch)
	cli.Close()
	if e := next(t, ctx, ch); e.Registered || e.Err == nil {
		t.Fatalf("after the client closed: %+v", e)
	}
	for {
		ok, err := r.Registered()
		if !ok && errors.Is(err, rpc.ErrClientClosed) {
			break // it stopped trying
		}
		if ctx.Err() != nil {
			t.Fatalf("Registered: %v %v, want ErrClientClosed", ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case e := <-ch:
		t.Fatalf("event after the loss: %+v", e)
	default:
	}
}

// Drain and Update each cost one transaction: the write is guarded by the
// revision of the registration's last write.
func TestUpdateCostsOneTransaction(t *testing.T) {
	ctx := ctxFor(t)
	ccli, counter := testutil.CountingClient(t)
	r := register(t, ctx, ccli, testutil.Prefix(t), discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"},
		discovery.WithGrace(0))
	counter.Reset()
	if err := r.Update(ctx, func(in *discovery.Instance) { in.Weight = 3 }); err != nil {
		t.Fatal(err)
	}
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counter.Calls("Txn"); n != 2 {
		t.Fatalf("transactions for an Update and a Drain: %d, want 2", n)
	}
}

// Close with a ctx that has ended skips the drain and the grace period,
// still deletes the instance, and says that ctx ended.
func TestCloseWithAnEndedContext(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	r := register(t, ctx, cli, testutil.Prefix(t), discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"},
		discovery.WithGrace(time.Hour))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Close(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v, want context.Canceled", err)
	}
	if resp, err := cli.Get(ctx, r.Key()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the key after Close: %v %v", resp.Kvs, err)
	}
}
