package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// An item Nacked on its last allowed delivery moves to the dead-letter
// queue with its ID, priority and value; its attempts start again there.
func TestDeadLetterAfterNacks(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	prefix, dead := testutil.Prefix(t), testutil.Prefix(t)
	q := newQueue(t, s, prefix, queue.WithDeadLetter(dead, 3))
	bad := mustEnqueue(t, ctx, q, "poison", -2)
	good := mustEnqueue(t, ctx, q, "fine", 4)
	for attempt := 1; attempt <= 3; attempt++ {
		it := mustDequeue(t, ctx, q)
		if it.ID() != bad || it.Attempts() != attempt {
			t.Fatalf("delivery %d: got (%s, %d), want (%s, %d)", attempt, it.ID(), it.Attempts(), bad, attempt)
		}
		if err := it.Nack(ctx); err != nil {
			t.Fatalf("Nack %d: %v", attempt, err)
		}
	}
	it := mustDequeue(t, ctx, q)
	if it.ID() != good {
		t.Fatalf("after dead-lettering: got %s, want %s", it.ID(), good)
	}
	mustAck(t, ctx, it)
	noneUnder(t, cli, prefix+"/")

	dq := newQueue(t, s, dead)
	d := mustDequeue(t, ctx, dq)
	if d.ID() != bad || d.Value() != "poison" || d.Priority() != -2 || d.Attempts() != 1 {
		t.Fatalf("dead letter: got (%s, %q, prio %d, attempts %d), want (%s, \"poison\", -2, 1)",
			d.ID(), d.Value(), d.Priority(), d.Attempts(), bad)
	}
	mustAck(t, ctx, d)
}

// A consumer that dies with the last allowed delivery counts as a failure:
// the next Dequeue moves the item to the dead-letter queue instead of
// delivering it.
func TestDeadLetterAfterConsumerDeath(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix, dead := testutil.Prefix(t), testutil.Prefix(t)
	opt := queue.WithDeadLetter(dead, 2)
	for attempt := 1; attempt <= 2; attempt++ {
		s := testutil.Session(t, cli)
		q := newQueue(t, s, prefix, opt)
		if attempt == 1 {
			mustEnqueue(t, ctx, q, "crashes its consumer", 0)
		}
		it := mustDequeue(t, ctx, q)
		if it.Attempts() != attempt {
			t.Fatalf("delivery %d: attempts %d", attempt, it.Attempts())
		}
		testutil.Revoke(t, cli, s)
	}
	s := testutil.Session(t, cli)
	q := newQueue(t, s, prefix, opt)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if it, err := q.Dequeue(short); err != context.DeadlineExceeded {
		t.Fatalf("Dequeue: got (%v, %v), want nothing to deliver", it, err)
	}
	noneUnder(t, cli, prefix+"/")
	d := mustDequeue(t, ctx, newQueue(t, s, dead))
	if d.Value() != "crashes its consumer" {
		t.Fatalf("dead letter: got %q", d.Value())
	}
	mustAck(t, ctx, d)
}

// Without WithDeadLetter an item is delivered as often as it fails.
func TestNoDeadLetterByDefault(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	q := newQueue(t, testutil.Session(t, cli), testutil.Prefix(t))
	mustEnqueue(t, ctx, q, "x", 0)
	for attempt := 1; attempt <= 10; attempt++ {
		it := mustDequeue(t, ctx, q)
		if it.Attempts() != attempt {
			t.Fatalf("attempts: got %d, want %d", it.Attempts(), attempt)
		}
		if attempt == 10 {
			mustAck(t, ctx, it)
		} else if err := it.Nack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
