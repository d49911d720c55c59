package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A cache cut off while the prefix changes and history is compacted past
// it lists again and delivers the difference as one resync: subscribers
// never see the watch die, and end up where etcd is.
func TestResyncAfterCompaction(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	cfg, proxy := testutil.ProxiedConfig(t)
	cut := testutil.ClientWith(t, cfg)
	prefix := testutil.Prefix(t) + "/"
	put(t, ctx, cli, prefix+"kept", "1")
	put(t, ctx, cli, prefix+"changed", "1")
	put(t, ctx, cli, prefix+"deleted", "1")
	c := open(t, ctx, cut, prefix)
	sub := c.Subscribe(ctx)
	var m mirror
	m.apply(t, next(t, ctx, sub))

	proxy.Blackhole()
	put(t, ctx, cli, prefix+"changed", "2")
	put(t, ctx, cli, prefix+"changed", "3")
	if _, err := cli.Delete(ctx, prefix+"deleted"); err != nil {
		t.Fatal(err)
	}
	put(t, ctx, cli, prefix+"added", "1")
	rev := put(t, ctx, cli, prefix+"added-and-deleted", "1")
	if _, err := cli.Delete(ctx, prefix+"added-and-deleted"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, rev+1); err != nil {
		t.Fatal(err)
	}
	want, wantRev := etcdState(t, ctx, cli, prefix)
	proxy.Pass()

	u := next(t, ctx, sub)
	if u.Kind != cache.Changes || !u.Resync {
		t.Fatalf("update after the compaction: kind %v, resync %v; want a resync", u.Kind, u.Resync)
	}
	m.apply(t, u)
	got := map[string]string{}
	for _, ch := range u.Changes {
		got[ch.Key] = fmt.Sprintf("%v %s (was %q)", ch.Type, ch.Value, ch.Prev.Value)
	}
	wantChanges := map[string]string{
		prefix + "changed": `put 3 (was "1")`,
		prefix + "deleted": `delete  (was "1")`,
		prefix + "added":   `put 1 (was "")`,
	}
	if fmt.Sprint(got) != fmt.Sprint(wantChanges) {
		t.Fatalf("resync changes:\n%v\nwant:\n%v", got, wantChanges)
	}
	if m.render() != want || u.Revision() < wantRev {
		t.Fatalf("state after the resync at %d:\n%s\nwant at %d:\n%s", u.Revision(), m.render(), wantRev, want)
	}
	if c.Resyncs() != 1 {
		t.Fatalf("Resyncs: %d, want 1", c.Resyncs())
	}
	// And it follows on from there.
	last := put(t, ctx, cli, prefix+"kept", "2")
	for m.rev < last {
		m.apply(t, next(t, ctx, sub))
	}
}

// etcd refusing the cache is final: Open returns the error, and a running
// cache that is refused when it lists again closes its subscriptions and
// says why.
func TestPermissionDeniedIsFinal(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testutil.Prefix(t) + "/"

	t.Run("at open", func(t *testing.T) {
		cli, loser := testutil.LosingClient(t)
		loser.Deny("Range", nil)
		c, err := cache.Open(ctx, cli, prefix)
		if !errors.Is(err, rpctypes.ErrPermissionDenied) || c != nil {
			t.Fatalf("Open: got (%v, %v), want permission denied", c, err)
		}
	})

	t.Run("when listing again", func(t *testing.T) {
		cfg, proxy := testutil.ProxiedConfig(t)
		loser := &testutil.ReplyLoser{}
		loser.Lose(&cfg)
		cli := testutil.ClientWith(t, cfg)
		c := open(t, ctx, cli, prefix)
		sub := c.Subscribe(ctx)
		next(t, ctx, sub)
		// History the watch needs is compacted while it is cut off, so it
		// must list again, and that is refused.
		other := testutil.Client(t)
		proxy.Blackhole()
		put(t, ctx, other, prefix+"k", "1")
		rev := put(t, ctx, other, prefix+"k", "2")
		if _, err := other.Compact(ctx, rev); err != nil {
			t.Fatal(err)
		}
		loser.Deny("Range", nil)
		proxy.Pass()
		for range sub {
		}
		if err := c.Err(); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("Err: got %v, want permission denied", err)
		}
		if err := c.WaitRevision(ctx, 1<<40); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("WaitRevision: got %v, want permission denied", err)
		}
		if _, ok := <-c.Subscribe(context.Background()); ok {
			t.Fatal("a new subscription of a refused cache delivered an update")
		}
	})
}
