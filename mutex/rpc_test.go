package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// waitWatches waits until the counted client has n watches created.
func waitWatches(t *testing.T, ctx context.Context, c *testutil.RPCCounter, n int) {
	t.Helper()
	for attempt := 0; c.WatchesCreated() < n; attempt++ {
		if err := retry.Sleep(ctx, min(attempt, 3)); err != nil {
			t.Fatalf("waiting for %d watches: %v (have %d)", n, err, c.WatchesCreated())
		}
	}
}

func TestRoundTrips(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	other := testutil.Client(t)

	t.Run("uncontended lock and unlock", func(t *testing.T) {
		cli, c := testutil.CountingClient(t)
		m := newMutex(t, testutil.Session(t, cli), testutil.Prefix(t))
		c.Reset()
		l := mustLock(t, ctx, m)
		if got := c.KV(); got != 1 {
			t.Fatalf("Lock: got %d KV round trips, want 1", got)
		}
		c.Reset()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.KV(); got != 1 {
			t.Fatalf("Unlock: got %d KV round trips, want 1", got)
		}
	})

	t.Run("trylock free and busy", func(t *testing.T) {
		cli, c := testutil.CountingClient(t)
		prefix := testutil.Prefix(t)
		m := newMutex(t, testutil.Session(t, cli), prefix)
		c.Reset()
		l, err := m.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.KV(); got != 1 {
			t.Fatalf("TryLock free: got %d KV round trips, want 1", got)
		}
		busy := newMutex(t, testutil.Session(t, cli), prefix)
		c.Reset()
		if _, err := busy.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
			t.Fatalf("TryLock busy: got %v, want ErrLocked", err)
		}
		if got := c.KV(); got != 1 {
			t.Fatalf("TryLock busy: got %d KV round trips, want 1", got)
		}
		l.Unlock(ctx)
	})

	t.Run("head of the queue takes over without a read", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, other), prefix))
		cli, c := testutil.CountingClient(t)
		m := newMutex(t, testutil.Session(t, cli), prefix)
		c.Reset()
		w := lockAsync(ctx, m)
		// The handle's watch on our key, and the wait's watches on the
		// predecessor and our key.
		waitWatches(t, ctx, c, 3)
		if got := c.KV(); got != 1 {
			t.Fatalf("queueing: got %d KV round trips, want 1", got)
		}
		c.Reset()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		r := await(t, ctx, w)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := c.KV(); got != 0 {
			t.Fatalf("taking over: got %d KV round trips, want 0", got)
		}
		if got := c.WatchEvents(); got != 1 {
			t.Fatalf("taking over: got %d watch events, want 1 (the holder's delete)", got)
		}
		r.l.Unlock(ctx)
	})

	t.Run("waiter behind a leaver reads once", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, other), prefix))
		leaverCtx, leave := context.WithCancel(ctx)
		leaver := lockAsync(leaverCtx, newMutex(t, testutil.Session(t, other), prefix))
		waitQueue(t, ctx, other, prefix, 2)
		cli, c := testutil.CountingClient(t)
		m := newMutex(t, testutil.Session(t, cli), prefix)
		c.Reset()
		w := lockAsync(ctx, m)
		waitWatches(t, ctx, c, 3)
		c.Reset()
		leave()
		if r := await(t, ctx, leaver); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("leaver: got %v, want context.Canceled", r.err)
		}
		// One read finds the holder ahead; then two new watches.
		waitWatches(t, ctx, c, 2)
		if got := c.KV(); got != 1 {
			t.Fatalf("after the leaver left: got %d KV round trips, want 1", got)
		}
		c.Reset()
		holder.Unlock(ctx)
		r := await(t, ctx, w)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := c.KV(); got != 0 {
			t.Fatalf("taking over: got %d KV round trips, want 0", got)
		}
		r.l.Unlock(ctx)
	})
}
