package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// With many consumers waiting on an empty queue, each new item wakes one of
// them: the watch events and round trips per item do not grow with the
// number of waiters.
func TestNewItemWakesOneWaiter(t *testing.T) {
	for _, waiters := range []int{2, 16} {
		t.Run(map[int]string{2: "2 waiters", 16: "16 waiters"}[waiters], func(t *testing.T) {
			events, kv := wakeupCost(t, waiters, 10)
			t.Logf("%d waiters: %.1f watch events and %.1f KV round trips per item", waiters, events, kv)
			// One item costs: the head's wakeup, its read and claim, the
			// next waiter's wakeup and read, the Ack and its events, and
			// the consumer's return to the line. A herd would cost at least
			// one event and one read per waiter.
			if events > 8 {
				t.Errorf("watch events per item: got %.1f, want at most 8", events)
			}
			if kv > 8 {
				t.Errorf("KV round trips per item: got %.1f, want at most 8", kv)
			}
		})
	}
}

// wakeupCost runs n consumers waiting on an empty queue, enqueues items one
// at a time (from a client that is not counted), and returns the counted
// consumers' watch events and KV round trips per item, from the enqueue
// until every consumer is waiting again.
func wakeupCost(t *testing.T, n, items int) (events, kv float64) {
	cli, rpcs := testutil.CountingClient(t)
	producer := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	prefix := testutil.Prefix(t)
	pq := newQueue(t, testutil.Session(t, producer), prefix)

	got := make(chan *queue.Item)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		q := newQueue(t, testutil.Session(t, cli), prefix)
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				it, err := q.Dequeue(cctx)
				if err != nil {
					return
				}
				// Ack before going back to the line, so that the line is
				// whole again when the test counts.
				if err := it.Ack(cctx); err != nil {
					return
				}
				select {
				case got <- it:
				case <-cctx.Done():
					return
				}
			}
		}()
	}
	defer func() {
		stop()
		for i := 0; i < n; i++ {
			<-done
		}
	}()
	waitKeys(t, ctx, producer, prefix+"/waiters/", n)
	rpcs.Reset()
	for i := 0; i < items; i++ {
		id := mustEnqueue(t, ctx, pq, "wake", 0)
		select {
		case it := <-got:
			if it.ID() != id {
				t.Fatalf("got %s, want %s", it.ID(), id)
			}
		case <-ctx.Done():
			t.Fatal("no consumer woke")
		}
		waitKeys(t, ctx, producer, prefix+"/waiters/", n)
	}
	// The last consumer to become first in line reads and starts its
	// watch after the count may have been taken; that is at most one read.
	return float64(rpcs.WatchEvents()) / float64(items), float64(rpcs.KV()) / float64(items)
}
