package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// lostEnqueue enqueues "v" through a client that loses the answer of the
// first attempt; in the window between etcd applying it and the producer
// hearing of the failure, meanwhile runs with a consumer's queue.
func lostEnqueue(t *testing.T, ctx context.Context, meanwhile func(consumer *queue.Queue)) (*queue.Queue, string, error) {
	t.Helper()
	prefix := testutil.Prefix(t)
	lcli, loser := testutil.LosingClient(t)
	producer := newQueue(t, testutil.Session(t, lcli), prefix)
	consumer := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	loser.Next("Txn", testutil.TxnPuts(prefix+"/items/"), func() { meanwhile(consumer) })
	id, err := producer.Enqueue(ctx, "v")
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d, want 1", loser.Lost())
	}
	return consumer, id, err
}

// An Enqueue whose answer was lost, and whose item was served and acked
// before the retry, does not enqueue it a second time: the retry finds the
// first attempt in etcd's history.
func TestEnqueueLostAnswerItemAckedMeanwhile(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	var served string
	consumer, _, err := lostEnqueue(t, ctx, func(c *queue.Queue) {
		it := mustDequeue(t, ctx, c)
		served = it.Value()
		if err := it.Ack(ctx); err != nil {
			t.Errorf("Ack: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if served != "v" {
		t.Fatalf("served %q, want v", served)
	}
	if n, err := consumer.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after the item was acked: %d, %v; want 0 (enqueued twice)", n, err)
	}
}

// An Enqueue whose answer was lost returns the ID of the item the first
// attempt wrote, and the queue holds it once.
func TestEnqueueLostAnswerEnqueuesOnce(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	consumer, id, err := lostEnqueue(t, ctx, func(*queue.Queue) {})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if n, err := consumer.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len: %d, %v; want 1", n, err)
	}
	it := mustDequeue(t, ctx, consumer)
	if it.ID() != id {
		t.Fatalf("served %s, Enqueue returned %s", it.ID(), id)
	}
	if err := it.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

// When the history that would tell was compacted before the retry, Enqueue
// says it cannot know, instead of enqueuing a second copy.
func TestEnqueueLostAnswerHistoryCompacted(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	consumer, _, err := lostEnqueue(t, ctx, func(c *queue.Queue) {
		if err := mustDequeue(t, ctx, c).Ack(ctx); err != nil {
			t.Errorf("Ack: %v", err)
		}
		resp, err := cli.Get(ctx, "compact-here")
		if err == nil {
			_, err = cli.Compact(ctx, resp.Header.Revision)
		}
		if err != nil {
			t.Errorf("compact: %v", err)
		}
	})
	if !errors.Is(err, queue.ErrOutcomeUnknown) {
		t.Fatalf("Enqueue: %v, want ErrOutcomeUnknown", err)
	}
	if n, err := consumer.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len: %d, %v; want 0", n, err)
	}
}
