package cache_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	for _, tc := range []struct {
		name string
		err  error
		open func() (*cache.Cache, error)
	}{
		{"nil client", lockstep.ErrNilClient, func() (*cache.Cache, error) { return cache.Open(ctx, nil, "/a/") }},
		{"empty prefix", lockstep.ErrInvalidPrefix, func() (*cache.Cache, error) { return cache.Open(ctx, cli, "") }},
		{"zero buffer", cache.ErrInvalidOption, func() (*cache.Cache, error) {
			return cache.Open(ctx, cli, "/a/", cache.WithBuffer(0))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.open()
			if !errors.Is(err, tc.err) || c != nil {
				t.Fatalf("Open: got (%v, %v), want %v", c, err, tc.err)
			}
		})
	}
}

// A subscription starts with the whole state and then follows every
// change in order; every update's snapshot is what its changes lead to.
func TestSubscribeFollowsEveryChange(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	put(t, ctx, cli, prefix+"a", "1")
	put(t, ctx, cli, prefix+"b", "1")
	put(t, ctx, cli, prefix+"x", "1")
	put(t, ctx, cli, prefix[:len(prefix)-1]+"-sibling", "1") // not under the prefix
	c := open(t, ctx, cli, prefix)
	sub := c.Subscribe(ctx)
	var m mirror
	first := next(t, ctx, sub)
	if first.Kind != cache.Whole || first.Snapshot.Len() != 3 {
		t.Fatalf("first update: kind %v, %d keys; want the whole state of 3 keys", first.Kind, first.Snapshot.Len())
	}
	m.apply(t, first)

	put(t, ctx, cli, prefix+"a", "2")
	if _, err := cli.Delete(ctx, prefix+"b"); err != nil {
		t.Fatal(err)
	}
	last := put(t, ctx, cli, prefix+"c", "1")
	for m.rev < last {
		u := next(t, ctx, sub)
		if u.Kind != cache.Changes || u.Resync {
			t.Fatalf("update: kind %v, resync %v; want plain changes", u.Kind, u.Resync)
		}
		m.apply(t, u)
	}
	want, _ := etcdState(t, ctx, cli, prefix)
	if got := m.render(); got != want {
		t.Fatalf("state after the changes:\n%s\nwant:\n%s", got, want)
	}
	if err := c.WaitRevision(ctx, last); err != nil {
		t.Fatal(err)
	}
	if got := state(c.Snapshot()); got != want {
		t.Fatalf("snapshot:\n%s\nwant:\n%s", got, want)
	}
}

// A snapshot never changes, whatever the cache does after it was taken.
func TestSnapshotIsImmutable(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	put(t, ctx, cli, prefix+"a", "1")
	c := open(t, ctx, cli, prefix)
	before := c.Snapshot()
	rev := put(t, ctx, cli, prefix+"a", "2")
	put(t, ctx, cli, prefix+"b", "1")
	if err := c.WaitRevision(ctx, rev+1); err != nil {
		t.Fatal(err)
	}
	if kv, ok := before.Get(prefix + "a"); !ok || kv.Value != "1" || before.Len() != 1 {
		t.Fatalf("old snapshot changed: %q, %v, %d keys", kv.Value, ok, before.Len())
	}
	if kv, _ := c.Snapshot().Get(prefix + "a"); kv.Value != "2" || c.Snapshot().Len() != 2 {
		t.Fatalf("new snapshot: a=%q, %d keys", kv.Value, c.Snapshot().Len())
	}
}

// WaitRevision returns for a write outside the prefix too: the cache asks
// the server to confirm its progress.
func TestWaitRevisionOutsideThePrefix(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	c := open(t, ctx, cli, prefix)
	rev := put(t, ctx, cli, testutil.Prefix(t)+"-elsewhere", "x")
	if err := c.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if have, confirmed := c.Progress(); have < rev || confirmed.IsZero() {
		t.Fatalf("Progress: revision %d confirmed at %v, want at least %d", have, confirmed, rev)
	}
}

// A subscriber that stops reading falls behind: it gets a fresh whole state
// instead of the changes it missed, and nobody waited for it.
func TestSlowSubscriberGetsAWholeState(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	c := open(t, ctx, cli, prefix, cache.WithBuffer(4))
	slow := c.Subscribe(ctx)
	fast := c.Subscribe(ctx)
	if u := next(t, ctx, slow); u.Kind != cache.Whole {
		t.Fatalf("first update: %v, want whole", u.Kind)
	}
	var m mirror
	m.apply(t, next(t, ctx, fast))
	// One change per update: the fast one sees each write before the next
	// is made, so the slow one's queue gets 20 updates and overflows
	// however the server batches its events.
	var last int64
	for i := range 20 {
		last = put(t, ctx, cli, prefix+"k", string(rune('a'+i)))
		for m.rev < last {
			m.apply(t, next(t, ctx, fast))
		}
	}
	u := next(t, ctx, slow)
	if u.Kind != cache.Whole {
		t.Fatalf("slow subscriber's next update: %v, want a whole state", u.Kind)
	}
	if kv, _ := u.Snapshot.Get(prefix + "k"); u.Revision() < last || kv.Value != "t" {
		t.Fatalf("the whole state is at %d with k=%q, want at least %d with k=t", u.Revision(), kv.Value, last)
	}
}

// Closing a cache closes its subscriptions; a subscription ends with its
// ctx; Subscribe after Close gives a closed channel.
func TestSubscriptionsEnd(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	c := open(t, ctx, cli, prefix)
	sctx, cancel := context.WithCancel(ctx)
	byCtx := c.Subscribe(sctx)
	byClose := c.Subscribe(ctx)
	next(t, ctx, byCtx)
	next(t, ctx, byClose)
	cancel()
	for range byCtx {
	}
	c.Close()
	for range byClose {
	}
	if _, ok := <-c.Subscribe(ctx); ok {
		t.Fatal("Subscribe after Close delivered an update")
	}
	if err := c.WaitRevision(ctx, 1<<40); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("WaitRevision after Close: got %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), cache.ErrClosed) {
		t.Fatalf("Err after Close: %v", c.Err())
	}
}

// A Cache that joins a copy another Cache opened earlier holds every write
// that completed before its Open, like a fresh one.
func TestOpenOnASharedCopyReadsItsWrites(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	open(t, ctx, cli, prefix)
	for i := range 100 {
		v := strconv.Itoa(i)
		put(t, ctx, cli, prefix+"k", v)
		c, err := cache.Open(ctx, cli, prefix)
		if err != nil {
			t.Fatal(err)
		}
		kv, ok := c.Snapshot().Get(prefix + "k")
		c.Close()
		if !ok || kv.Value != v {
			t.Fatalf("Open after the write of %s holds %q", v, kv.Value)
		}
	}
}

// Under yields the keys under a part of the prefix, in key order.
func TestSnapshotUnder(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	for _, k := range []string{"b", "a/2", "ab", "a/1", "a"} {
		put(t, ctx, cli, prefix+k, k)
	}
	c := open(t, ctx, cli, prefix)
	var got []string
	for k, kv := range c.Snapshot().Under(prefix + "a/") {
		if kv.Value != strings.TrimPrefix(k, prefix) {
			t.Fatalf("%s holds %q", k, kv.Value)
		}
		got = append(got, strings.TrimPrefix(k, prefix))
	}
	if strings.Join(got, ",") != "a/1,a/2" {
		t.Fatalf("Under(a/): %v", got)
	}
	for range c.Snapshot().Under(prefix + "c") {
		t.Fatal("Under a part with no keys yielded one")
	}
}
