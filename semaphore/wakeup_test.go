package semaphore_test

import (
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

// TestWakeupsPerRelease queues 50 waiters, each on its own counting client,
// and releases permits one at a time. Each waiter reports the watch events
// and KV round trips it received while it waited. A release wakes the first
// waiter (one delete event) and that waiter's promotion wakes the next (one
// put event), so no waiter sees more than two events however far back it
// queued; a semaphore whose waiters watch the whole prefix would deliver
// every release to every waiter.
//
// A waiter's KV round trips: enqueue, a read when the waiter ahead moves,
// the touch when promoted, and at most one more read each time a write
// lands between a read and the start of the watch that follows it (once
// while queueing, once while first in line): at most 5.
func TestWakeupsPerRelease(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 2*time.Minute)
	prefix := testutil.Prefix(t)
	const limit, waiters = 3, 50
	holders := newSem(t, testutil.Session(t, cli), prefix, limit)
	var held []*semaphore.Permit
	for range limit {
		held = append(held, acquire(t, ctx, holders))
	}

	type result struct {
		grant
		events, kv int // counted on the waiter's own client while it waited
	}
	out := make(chan result, waiters)
	for i := range waiters {
		wcli, rpc := testutil.CountingClient(t)
		sem := newSem(t, testutil.Session(t, wcli), prefix, limit)
		rpc.Reset()
		go func() {
			p, err := sem.Acquire(ctx)
			out <- result{grant{i, p, err}, rpc.WatchEvents(), rpc.KV()}
		}()
		waitKeys(t, ctx, cli, prefix, limit+i+1)
	}

	total := 0
	kvs := map[int]int{} // KV round trips per waiter -> waiters
	for n := range waiters {
		release(t, ctx, held[0])
		held = held[1:]
		var r result
		select {
		case r = <-out:
		case <-ctx.Done():
			t.Fatalf("release %d: no waiter was promoted", n)
		}
		if r.err != nil {
			t.Fatalf("waiter %d: %v", r.i, r.err)
		}
		held = append(held, r.p)
		if r.i != n {
			t.Fatalf("release %d promoted waiter %d, want %d", n, r.i, n)
		}
		if r.events > 2 {
			t.Errorf("waiter %d received %d watch events while waiting, want at most 2", r.i, r.events)
		}
		if r.kv > 5 {
			t.Errorf("waiter %d made %d KV round trips, want at most 5", r.i, r.kv)
		}
		kvs[r.kv]++
		total += r.events
	}
	for _, p := range held {
		release(t, ctx, p)
	}
	t.Logf("%d releases, %d watch events delivered to waiters: %.2f per release; waiters by KV round trips: %v",
		waiters, total, float64(total)/waiters, kvs)
	if total > 2*waiters {
		t.Fatalf("watch events: got %d for %d releases, want at most %d", total, waiters, 2*waiters)
	}
}
