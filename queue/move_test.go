package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// A dead letter goes back to work with Move: its value and priority stay,
// its attempts start again; a claimed item, a missing one and bad
// arguments are refused.
func TestMoveRequeuesADeadLetter(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix, deadPrefix := testutil.Prefix(t), testutil.Prefix(t)+"-dead"
	cli := testutil.Client(t)
	q := newQueue(t, testutil.Session(t, cli), prefix, queue.WithDeadLetter(deadPrefix, 1))
	mustEnqueue(t, ctx, q, "poison", -3)
	if err := mustDequeue(t, ctx, q).Nack(ctx); err != nil {
		t.Fatal(err)
	}
	dead, _ := newProducer(t, deadPrefix)
	letters, err := dead.List(ctx, 0)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %+v, %v", letters, err)
	}
	main, _ := newProducer(t, prefix)
	id, err := dead.Move(ctx, letters[0].ID, main)
	if err != nil {
		t.Fatalf("Move: %v", err)
	}
	if n, _ := dead.Len(ctx); n != 0 {
		t.Fatalf("dead letters after Move: %d", n)
	}
	it := mustDequeue(t, ctx, q)
	if it.ID() != id || it.Value() != "poison" || it.Priority() != -3 || it.Attempts() != 1 {
		t.Fatalf("moved item: %s %q prio %d attempt %d; want %s poison -3 1", it.ID(), it.Value(), it.Priority(), it.Attempts(), id)
	}
	// Claimed now: not movable.
	if _, err := main.Move(ctx, id, dead); !errors.Is(err, queue.ErrClaimed) {
		t.Fatalf("Move of a claimed item: %v, want ErrClaimed", err)
	}
	mustAck(t, ctx, it)
	if _, err := main.Move(ctx, id, dead); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Move of an acked item: %v, want ErrNotFound", err)
	}
	if _, err := main.Move(ctx, "nope", dead); !errors.Is(err, queue.ErrInvalidID) {
		t.Fatalf("Move of a malformed ID: %v, want ErrInvalidID", err)
	}
	if _, err := main.Move(ctx, id, main); !errors.Is(err, queue.ErrInvalidOption) {
		t.Fatalf("Move to the same queue: %v, want ErrInvalidOption", err)
	}
}

// A Move whose answer was lost moves the item once.
func TestMoveLostAnswer(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	from, to := testutil.Prefix(t), testutil.Prefix(t)+"-to"
	src, _ := newProducer(t, from)
	dst, loser := losingProducer(t, to)
	id, err := src.Enqueue(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	loser.Next("Txn", testutil.TxnPuts(to+"/items/"), func() {})
	if _, err := src.Move(ctx, id, dst); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d, want 1", loser.Lost())
	}
	if n, _ := dst.Len(ctx); n != 1 {
		t.Fatalf("items moved: %d, want 1", n)
	}
	if n, _ := src.Len(ctx); n != 0 {
		t.Fatalf("items left behind: %d, want 0", n)
	}
}
