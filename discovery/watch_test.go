package discovery_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// Every service watched, every gRPC client and every registration on one
// etcd client and prefix share one etcd watcher.
func TestOneEtcdWatchPerClientAndPrefix(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	before := testutil.SettledWatchers(t, ctx)
	for i := range 10 {
		service := fmt.Sprintf("svc%d", i)
		register(t, ctx, cli, prefix, discovery.Instance{Service: service, ID: "a", Addr: "127.0.0.1:1"}, discovery.WithGrace(0))
		for range 5 {
			watch(t, ctx, cli, prefix, service)
		}
	}
	b := startBackend(t, "b")
	register(t, ctx, cli, prefix, discovery.Instance{Service: "grpc", ID: "b", Addr: b.addr}, discovery.WithGrace(0))
	for range 5 {
		c := client{ctx, dial(t, cli, prefix, "grpc", discovery.WeightedRoundRobin)}
		warm(t, ctx, c, "b")
	}
	testutil.AwaitWatchers(t, ctx, before+1)
	if got := testutil.SettledWatchers(t, ctx) - before; got != 1 {
		t.Fatalf("etcd watchers for 11 registrations, 50 watchers and 5 gRPC clients on one client: %d, want 1", got)
	}
}

// Update and Drain reach watchers; WaitRevision gives read-your-writes.
func TestWatchSeesUpdateAndDrain(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	w := watch(t, ctx, cli, prefix, "svc")
	if got := w.Instances(); len(got) != 0 {
		t.Fatalf("instances of an empty service: %v", got)
	}
	r := register(t, ctx, cli, prefix, discovery.Instance{Service: "svc", ID: "a", Addr: "127.0.0.1:1"}, discovery.WithGrace(0))
	if err := r.Update(ctx, func(in *discovery.Instance) {
		in.Weight, in.Version, in.Metadata = 5, "v9", map[string]string{"k": "v"}
		in.Addr = "10.9.9.9:9" // ignored: the address is the instance's identity
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, r.Key())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitRevision(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	in, ok := find(w.Instances(), "a")
	if !ok || in.Weight != 5 || in.Version != "v9" || in.Metadata["k"] != "v" || in.Addr != "127.0.0.1:1" ||
		in.Status != discovery.Serving || in.Key != r.Key() || in.Lease == 0 || in.Revision != resp.Kvs[0].ModRevision {
		t.Fatalf("after Update: %+v", in)
	}
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, w, "draining", func(list []discovery.Instance) bool {
		in, ok := find(list, "a")
		return ok && in.Status == discovery.Draining && in.Weight == 5
	})
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, w, "gone", func(list []discovery.Instance) bool { return len(list) == 0 })
}

func TestWatchRefusesBadInput(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	for _, tc := range []struct {
		name    string
		cli     *clientv3.Client
		prefix  string
		service string
		opts    []discovery.WatchOption
		want    error
	}{
		{"nil client", nil, "/p", "s", nil, lockstep.ErrNilClient},
		{"root prefix", cli, "/", "s", nil, lockstep.ErrInvalidPrefix},
		{"empty service", cli, "/p", "", nil, discovery.ErrInvalidService},
		{"service with /", cli, "/p", "a/b", nil, discovery.ErrInvalidService},
		{"share 1", cli, "/p", "s", []discovery.WatchOption{discovery.WithDropGuard(1, time.Second, time.Second)}, discovery.ErrInvalidOption},
		{"no hold", cli, "/p", "s", []discovery.WatchOption{discovery.WithDropGuard(0.5, time.Second, 0)}, discovery.ErrInvalidOption},
	} {
		if w, err := discovery.Watch(ctx, tc.cli, tc.prefix, tc.service, tc.opts...); !errors.Is(err, tc.want) {
			if w != nil {
				w.Close()
			}
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Close ends Updates and says so.
func TestWatcherClose(t *testing.T) {
	ctx := ctxFor(t)
	w, err := discovery.Watch(ctx, testutil.Client(t), testutil.Prefix(t), "svc")
	if err != nil {
		t.Fatal(err)
	}
	ups := w.Updates(ctx)
	<-ups
	w.Close()
	if _, ok := <-ups; ok {
		t.Fatal("Updates open after Close")
	}
	if !errors.Is(w.Err(), discovery.ErrClosed) || !errors.Is(w.WaitRevision(ctx, 1<<40), discovery.ErrClosed) {
		t.Fatalf("after Close: Err %v", w.Err())
	}
}

// With the drop guard, a mass delete is held, then accepted; an ordinary
// removal goes through at once.
func TestDropGuardHoldsAMassDrop(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	const hold = 2 * time.Second
	w := watch(t, ctx, cli, prefix, "svc", discovery.WithDropGuard(0.5, time.Minute, hold))
	var keys []string
	for i := range 6 {
		key := fmt.Sprintf("%s/svc/%d", prefix, i)
		keys = append(keys, key)
		if _, err := cli.Put(ctx, key, `{"Op":0,"Addr":"127.0.0.1:1"}`); err != nil {
			t.Fatal(err)
		}
	}
	await(t, ctx, w, "six", func(l []discovery.Instance) bool { return len(l) == 6 })
	if _, err := cli.Delete(ctx, keys[0]); err != nil { // one of six: let through
		t.Fatal(err)
	}
	await(t, ctx, w, "five", func(l []discovery.Instance) bool { return len(l) == 5 })
	var ops []clientv3.Op
	for _, k := range keys[1:5] {
		ops = append(ops, clientv3.OpDelete(k))
	}
	resp, err := cli.Txn(ctx).Then(ops...).Commit() // four more of six within the window
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitRevision(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if got := len(w.Instances()); got != 5 {
		t.Fatalf("instances right after the mass drop: %d, want the 5 held", got)
	}
	await(t, ctx, w, "the drop accepted", func(l []discovery.Instance) bool { return len(l) == 1 })
}
