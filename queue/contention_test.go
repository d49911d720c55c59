package queue_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// Consumers of one process draining a backlog take different items instead
// of racing for the head: the round trips per item stay those of one
// uncontended Dequeue and Ack (read, claim, ack).
func TestConsumersDoNotCollide(t *testing.T) {
	perItem := drainCost(t, 8, false)
	if perItem > 3.1 {
		t.Errorf("KV round trips per item: got %.3f, want at most 3.1 (read, claim, ack)", perItem)
	}
}

// Consumers in different processes cannot coordinate in memory. One that
// loses a race spreads over the first few items, so lost races stay few:
// without the spread every round would have one winner and seven losers,
// some five extra round trips per item (measured: 7).
func TestConsumersOfManyProcessesSpread(t *testing.T) {
	perItem := drainCost(t, 8, true)
	if perItem > 4 {
		t.Errorf("KV round trips per item: got %.3f, want at most 4", perItem)
	}
}

// drainCost has consumers drain a backlog and returns the KV round trips
// per item. alone makes each consumer act as a process of its own.
func drainCost(t *testing.T, consumers int, alone bool) float64 {
	cli, rpcs := testutil.CountingClient(t)
	ctx := testutil.Context(t, 2*time.Minute)
	prefix := testutil.Prefix(t)
	pq := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	items := scale(800, 200)
	for i := 0; i < items; i++ {
		mustEnqueue(t, ctx, pq, "x", i%4)
	}
	var left atomic.Int64
	left.Store(int64(items))
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	rpcs.Reset()
	for c := 0; c < consumers; c++ {
		q := newQueue(t, testutil.Session(t, cli), prefix)
		if alone {
			queue.AsIfAlone(q)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				it, err := q.Dequeue(ctx)
				if err == nil {
					err = it.Ack(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perItem := float64(rpcs.KV()) / float64(items)
	t.Logf("%d consumers, %d items: %.3f KV round trips per item", consumers, items, perItem)
	noneUnder(t, cli, prefix+"/items/")
	return perItem
}
