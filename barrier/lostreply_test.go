package barrier_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A registration that etcd applied but whose answer was lost, while
// another participant opened the round with it in the roster: the retry
// must find itself in the round, not wait for the round to close.
func TestDoubleBarrierRegistrationAnswerLost(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	lossy, loser := testutil.LosingClient(t)
	a, err := barrier.NewDouble(testutil.Session(t, lossy), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.NewDouble(testutil.Session(t, testutil.Client(t)), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	var bEnter error
	loser.Next("Txn", testutil.TxnPuts(prefix+"/parties/"), func() {
		// A is registered; B arrives second and opens the round with A.
		bEnter = b.Enter(ctx)
	})
	if err := a.Enter(ctx); err != nil {
		t.Fatalf("A Enter: %v", err)
	}
	if bEnter != nil {
		t.Fatalf("B Enter: %v", bEnter)
	}
	if loser.Lost() != 1 {
		t.Fatalf("lost %d answers, want 1", loser.Lost())
	}
	if a.Round() != b.Round() {
		t.Fatalf("A is in round %d, B in round %d", a.Round(), b.Round())
	}
	noErrors(t, "Leave", all([]*barrier.DoubleBarrier{a, b}, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
}

// A "left" mark that etcd applied but whose answer was lost, after which
// the other participant closed the round: Leave succeeded.
func TestDoubleBarrierLeaveAnswerLost(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	lossy, loser := testutil.LosingClient(t)
	a, err := barrier.NewDouble(testutil.Session(t, lossy), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := barrier.NewDouble(testutil.Session(t, testutil.Client(t)), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	noErrors(t, "Enter", all([]*barrier.DoubleBarrier{a, b}, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	var bLeave error
	loser.Next("Txn", testutil.TxnPutsValue("left "), func() {
		// A has left; B leaves last and closes the round.
		bLeave = b.Leave(ctx)
	})
	if err := a.Leave(ctx); err != nil {
		t.Fatalf("A Leave: %v", err)
	}
	if bLeave != nil {
		t.Fatalf("B Leave: %v", bLeave)
	}
	if loser.Lost() != 1 {
		t.Fatalf("lost %d answers, want 1", loser.Lost())
	}
	// Both go on to the next round.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	noErrors(t, "Enter again", all([]*barrier.DoubleBarrier{a, b}, func(d *barrier.DoubleBarrier) error { return d.Enter(rctx) }))
}

// A Hold that etcd applied but whose answer was lost is recognised by the
// retry as this holder's, not reported as someone else's (ErrHeld).
func TestHoldAnswerLost(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	key := testutil.Prefix(t)
	lossy, loser := testutil.LosingClient(t)
	b, err := barrier.New(lossy, key)
	if err != nil {
		t.Fatal(err)
	}
	loser.Next("Txn", testutil.TxnPuts(key), nil)
	h, err := b.Hold(ctx)
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if loser.Lost() != 1 {
		t.Fatalf("lost %d answers, want 1", loser.Lost())
	}
	if err := h.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if resp, err := testutil.Client(t).Get(ctx, key); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the gate after Release: %v, %v; want open", resp, err)
	}
}
