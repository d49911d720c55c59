package barrier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// participants makes n participants of the double barrier prefix, each with
// its own session on cli.
func participants(t *testing.T, cli *clientv3.Client, prefix string, n, count int, opts ...lockstep.SessionOption) []*barrier.DoubleBarrier {
	t.Helper()
	ds := make([]*barrier.DoubleBarrier, n)
	for i := range ds {
		d, err := barrier.NewDouble(testutil.Session(t, cli, opts...), prefix, count)
		if err != nil {
			t.Fatal(err)
		}
		ds[i] = d
	}
	return ds
}

// all runs f for every participant at once and returns their errors.
func all(ds []*barrier.DoubleBarrier, f func(d *barrier.DoubleBarrier) error) []error {
	errs := make([]error, len(ds))
	done := make(chan struct{})
	for i, d := range ds {
		go func() {
			errs[i] = f(d)
			done <- struct{}{}
		}()
	}
	for range ds {
		<-done
	}
	return errs
}

func noErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: participant %d: %v", what, i, err)
		}
	}
}

// keysUnder returns the keys under prefix.
func keysUnder(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

func TestDoubleBarrierRounds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 4, 4)
	var last int64
	for round := range 5 {
		noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
		r := ds[0].Round()
		for i, d := range ds {
			if d.Round() != r {
				t.Fatalf("round %d: participant %d in round %d, participant 0 in %d", round, i, d.Round(), r)
			}
		}
		if r <= last {
			t.Fatalf("round %d: identity %d, want more than the previous %d", round, r, last)
		}
		last = r
		noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	}
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the last round: %v", ks)
	}
}

// goCall runs f in a goroutine and returns its result channel.
func goCall(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// put writes a marker key and returns the revision of the write.
func put(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Put(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestDoubleBarrierEnterWaitsForCount checks that Enter returns only after
// the count-th participant has arrived: the round opens at a revision after
// a marker written just before the last Enter.
func TestDoubleBarrierEnterWaitsForCount(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 3, 3)
	first := []<-chan error{goCall(func() error { return ds[0].Enter(ctx) }), goCall(func() error { return ds[1].Enter(ctx) })}
	waitKey(t, ctx, cli, ds[0].Key())
	waitKey(t, ctx, cli, ds[1].Key())
	marker := put(t, ctx, cli, prefix+"-marker")
	if err := ds[2].Enter(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ch := range first {
		if err := receive(t, ctx, ch, "Enter"); err != nil {
			t.Fatalf("participant %d: %v", i, err)
		}
	}
	for i, d := range ds {
		if d.Round() <= marker {
			t.Fatalf("participant %d: round opened at %d, before the last arrival's marker at %d", i, d.Round(), marker)
		}
	}
	noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
}

func TestDoubleBarrierCallOrder(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	d, err := barrier.NewDouble(testutil.Session(t, cli), testutil.Prefix(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Leave(ctx); !errors.Is(err, barrier.ErrNotEntered) {
		t.Fatalf("Leave before Enter: got %v, want ErrNotEntered", err)
	}
	if err := d.Enter(ctx); err != nil {
		t.Fatalf("Enter with count 1: %v", err)
	}
	if err := d.Enter(ctx); !errors.Is(err, barrier.ErrEntered) {
		t.Fatalf("second Enter: got %v, want ErrEntered", err)
	}
	if err := d.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := d.Leave(ctx); !errors.Is(err, barrier.ErrNotEntered) {
		t.Fatalf("second Leave: got %v, want ErrNotEntered", err)
	}
}

func TestDoubleBarrierCountMismatch(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)

	t.Run("while the round forms", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		ds := participants(t, cli, prefix, 2, 2)
		odd := participants(t, cli, prefix, 1, 3)[0]
		first := goCall(func() error { return ds[0].Enter(ctx) })
		waitKey(t, ctx, cli, ds[0].Key())
		if err := odd.Enter(ctx); !errors.Is(err, barrier.ErrCountMismatch) {
			t.Fatalf("Enter with count 3 after one with 2: got %v, want ErrCountMismatch", err)
		}
		if exists(t, ctx, cli, odd.Key()) {
			t.Fatalf("the mismatched participant's key %s is left", odd.Key())
		}
		if err := ds[1].Enter(ctx); err != nil {
			t.Fatal(err)
		}
		if err := receive(t, ctx, first, "Enter"); err != nil {
			t.Fatal(err)
		}
		noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	})

	t.Run("while the round is open", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		ds := participants(t, cli, prefix, 2, 2)
		odd := participants(t, cli, prefix, 1, 3)[0]
		noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
		if err := odd.Enter(ctx); !errors.Is(err, barrier.ErrCountMismatch) {
			t.Fatalf("Enter with count 3 into an open round of 2: got %v, want ErrCountMismatch", err)
		}
		noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
		if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
			t.Fatalf("keys left: %v", ks)
		}
	})
}

// TestDoubleBarrierExtraParticipant checks that a participant beyond the
// count waits for the next round, and is in it.
func TestDoubleBarrierExtraParticipant(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 3, 2)
	done := make(chan int, 3)
	errs := make([]error, 3)
	for i, d := range ds {
		go func() {
			errs[i] = d.Enter(ctx)
			done <- i
		}()
	}
	in := []int{<-done, <-done}
	for _, i := range in {
		if errs[i] != nil {
			t.Fatalf("participant %d: %v", i, errs[i])
		}
	}
	extra := 3 - in[0] - in[1]
	first := ds[in[0]].Round()
	if ds[in[1]].Round() != first {
		t.Fatalf("the first two are in rounds %d and %d", first, ds[in[1]].Round())
	}
	noErrors(t, "Leave", all([]*barrier.DoubleBarrier{ds[in[0]], ds[in[1]]}, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	select {
	case i := <-done:
		t.Fatalf("the extra participant %d returned from Enter with only itself registered: %v", i, errs[i])
	default:
	}
	// One of the first two comes back: with the extra, that makes two.
	if err := ds[in[0]].Enter(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the extra participant never entered")
	}
	if errs[extra] != nil {
		t.Fatalf("extra participant: %v", errs[extra])
	}
	if got := ds[extra].Round(); got != ds[in[0]].Round() || got <= first {
		t.Fatalf("extra participant in round %d, want the second round %d (first %d)", got, ds[in[0]].Round(), first)
	}
	second := []*barrier.DoubleBarrier{ds[in[0]], ds[extra]}
	noErrors(t, "Leave", all(second, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

// TestDoubleBarrierLateArrival checks that a participant arriving while a
// round is open waits for the next one.
func TestDoubleBarrierLateArrival(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 3, 2)
	noErrors(t, "Enter", all(ds[:2], func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	first := ds[0].Round()
	late := goCall(func() error { return ds[2].Enter(ctx) })
	noErrors(t, "Leave", all(ds[:2], func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if err := ds[0].Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, ctx, late, "late Enter"); err != nil {
		t.Fatal(err)
	}
	if got := ds[2].Round(); got != ds[0].Round() || got <= first {
		t.Fatalf("late participant in round %d, want %d (after %d)", got, ds[0].Round(), first)
	}
	noErrors(t, "Leave", all([]*barrier.DoubleBarrier{ds[0], ds[2]}, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

func TestDoubleBarrierEnterCancelled(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 4, 3)
	cctx, cancel := context.WithCancel(ctx)
	cancelled := goCall(func() error { return ds[0].Enter(cctx) })
	waitKey(t, ctx, cli, ds[0].Key())
	cancel()
	if err := receive(t, ctx, cancelled, "Enter"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Enter: got %v, want context.Canceled", err)
	}
	if exists(t, ctx, cli, ds[0].Key()) {
		t.Fatalf("the cancelled participant's key %s is left", ds[0].Key())
	}
	// The cancelled participant does not count: the round needs three more.
	noErrors(t, "Enter", all(ds[1:], func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	noErrors(t, "Leave", all(ds[1:], func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	// And it can take part in the next round.
	noErrors(t, "Enter", all(ds[:3], func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	noErrors(t, "Leave", all(ds[:3], func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

func TestDoubleBarrierLeaveCancelled(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 3, 3)
	noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	cctx, cancel := context.WithCancel(ctx)
	cancelled := goCall(func() error { return ds[0].Leave(cctx) })
	waitKey(t, ctx, cli, ds[0].Key()+".watch") // it waits, watching another party
	cancel()
	if err := receive(t, ctx, cancelled, "Leave"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Leave: got %v, want context.Canceled", err)
	}
	if exists(t, ctx, cli, ds[0].Key()) {
		t.Fatalf("the cancelled participant's key %s is left", ds[0].Key())
	}
	// It counts as having left.
	noErrors(t, "Leave", all(ds[1:], func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

// watched returns the participant among ds that d's proxy watches.
func watched(t *testing.T, ctx context.Context, cli *clientv3.Client, d *barrier.DoubleBarrier, ds []*barrier.DoubleBarrier) *barrier.DoubleBarrier {
	t.Helper()
	proxy := d.Key() + ".watch"
	waitKey(t, ctx, cli, proxy)
	resp, err := cli.Get(ctx, proxy)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", proxy, resp, err)
	}
	for _, o := range ds {
		if strings.HasSuffix(o.Key(), "/"+string(resp.Kvs[0].Value)) {
			return o
		}
	}
	t.Fatalf("%s watches %s, not a participant", proxy, resp.Kvs[0].Value)
	return nil
}

// TestDoubleBarrierWatchedPartyGivesUp checks that a waiter in Leave whose
// watched party gives up (its Leave is cancelled before it starts) moves on
// to the next party and returns when that one leaves.
func TestDoubleBarrierWatchedPartyGivesUp(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 3, 3)
	noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	waiting := goCall(func() error { return ds[0].Leave(ctx) })
	target := watched(t, ctx, cli, ds[0], ds)
	if err := target.Leave(canceled(ctx)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Leave with a cancelled ctx: got %v, want context.Canceled", err)
	}
	other := ds[1]
	if target == ds[1] {
		other = ds[2]
	}
	if err := other.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, ctx, waiting, "Leave"); err != nil {
		t.Fatal(err)
	}
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}
