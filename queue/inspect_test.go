package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// List shows the items in serving order with their claims and attempts;
// Peek the first one a Dequeue would receive; Get one by ID.
func TestListPeekGet(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	p, calls := newProducer(t, prefix)
	if _, err := p.Peek(ctx); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Peek of an empty queue: %v, want ErrNotFound", err)
	}
	late, _ := p.Enqueue(ctx, "late", queue.WithPriority(3))
	first, _ := p.Enqueue(ctx, "first", queue.WithPriority(-1))
	second, _ := p.Enqueue(ctx, "second")

	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	held := mustDequeue(t, ctx, q) // "first", attempt 1
	calls.Reset()
	list, err := p.List(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if calls.KV() != 1 {
		t.Fatalf("List: %d KV calls, want 1", calls.KV())
	}
	want := []queue.Info{
		{ID: first, Value: "first", Priority: -1, Attempts: 1, Claimed: true, ClaimLease: int64(held.Session().Lease()), ClaimRevision: held.Token()},
		{ID: second, Value: "second", Priority: 0},
		{ID: late, Value: "late", Priority: 3},
	}
	if len(list) != len(want) {
		t.Fatalf("List: %+v, want %+v", list, want)
	}
	for i := range want {
		want[i].Revision = list[i].Revision
		if list[i] != want[i] {
			t.Fatalf("List[%d]: %+v, want %+v", i, list[i], want[i])
		}
	}
	if top, err := p.List(ctx, 2); err != nil || len(top) != 2 || top[1].ID != second {
		t.Fatalf("List(2): %+v, %v", top, err)
	}
	if _, err := p.List(ctx, -1); !errors.Is(err, queue.ErrInvalidOption) {
		t.Fatalf("List(-1): %v, want ErrInvalidOption", err)
	}
	if next, err := p.Peek(ctx); err != nil || next.ID != second {
		t.Fatalf("Peek: %+v, %v; want %s, the first unclaimed item", next, err, second)
	}
	if got, err := p.Get(ctx, first); err != nil || got != list[0] {
		t.Fatalf("Get(%s): %+v, %v; want %+v", first, got, err, list[0])
	}
	if _, err := p.Get(ctx, "not-an-id"); !errors.Is(err, queue.ErrInvalidID) {
		t.Fatalf("Get of a malformed ID: %v, want ErrInvalidID", err)
	}
	mustAck(t, ctx, held)
	if _, err := p.Get(ctx, first); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Get of an acked item: %v, want ErrNotFound", err)
	}
}

// Remove deletes an item, and a consumer's claim on it, whose Item ends
// and whose Ack is refused; Purge empties the queue.
func TestRemoveAndPurge(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	p, _ := newProducer(t, prefix)
	ids, err := p.EnqueueBatch(ctx, values(5))
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	held := mustDequeue(t, ctx, q)
	if err := p.Remove(ctx, held.ID()); err != nil {
		t.Fatalf("Remove of a claimed item: %v", err)
	}
	select {
	case <-held.Done():
	case <-ctx.Done():
		t.Fatal("the removed item's claim did not end")
	}
	if !errors.Is(held.Err(), lockstep.ErrLost) {
		t.Fatalf("the removed item's Err: %v, want ErrLost", held.Err())
	}
	if err := held.Ack(ctx); !errors.Is(err, queue.ErrClaimLost) {
		t.Fatalf("Ack of a removed item: %v, want ErrClaimLost", err)
	}
	if err := p.Remove(ctx, ids[0]); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Remove again: %v, want ErrNotFound", err)
	}
	if err := p.Remove(ctx, ids[1]); err != nil {
		t.Fatalf("Remove of a waiting item: %v", err)
	}
	if n, err := p.Purge(ctx); err != nil || n != 3 {
		t.Fatalf("Purge: %d, %v; want 3", n, err)
	}
	if n, err := p.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after Purge: %d, %v", n, err)
	}
	if got := keysUnder(t, testutil.Client(t), prefix+"/claims/"); len(got) != 0 {
		t.Fatalf("claims left after Purge: %v", got)
	}
}

// A Remove whose answer was lost reports the removal, not ErrNotFound.
func TestRemoveLostAnswer(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	p, loser := losingProducer(t, prefix)
	id, err := p.Enqueue(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	loser.Next("Txn", testutil.TxnDeletes(prefix+"/items/"), func() {})
	if err := p.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d, want 1", loser.Lost())
	}
	if n, err := p.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len: %d, %v; want 0", n, err)
	}
}
