package queue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// While one consumer holds an item, nobody else receives it; Dequeue with
// nothing else to take blocks until ctx ends and leaves nothing behind.
func TestClaimExcludesOthers(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	qa := newQueue(t, testutil.Session(t, cli), prefix)
	qb := newQueue(t, testutil.Session(t, cli), prefix)
	mustEnqueue(t, ctx, qa, "only", 0)
	held := mustDequeue(t, ctx, qa)

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if it, err := qb.Dequeue(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dequeue while held: got (%v, %v), want DeadlineExceeded", it, err)
	}
	if ks := keysUnder(t, cli, prefix+"/waiters/"); len(ks) != 0 {
		t.Fatalf("waiter keys left after cancel: %v", ks)
	}
	// Once released, the waiting consumer gets it.
	ch := dequeueAsync(ctx, qb)
	if err := held.Nack(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, ch)
	if r.err != nil || r.it.ID() != held.ID() || r.it.Attempts() != 2 {
		t.Fatalf("after Nack: got (%v, %v), want %s with 2 attempts", r.it, r.err, held.ID())
	}
	mustAck(t, ctx, r.it)
	noneUnder(t, cli, prefix+"/")
}

// A consumer whose session is revoked loses its claim: the item goes to
// another consumer with Attempts 2, and the first consumer's Ack fails and
// removes nothing.
func TestClaimLostWhenSessionRevoked(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	sa := testutil.Session(t, cli)
	qa := newQueue(t, sa, prefix)
	qb := newQueue(t, testutil.Session(t, cli), prefix)
	id := mustEnqueue(t, ctx, qa, "job", 0)

	a := mustDequeue(t, ctx, qa)
	ch := dequeueAsync(ctx, qb) // waits: the only item is claimed
	testutil.Revoke(t, cli, sa)
	r := await(t, ctx, ch)
	if r.err != nil {
		t.Fatalf("Dequeue after revoke: %v", r.err)
	}
	b := r.it
	if b.ID() != id || b.Attempts() != 2 {
		t.Fatalf("redelivery: got (%s, attempts %d), want (%s, 2)", b.ID(), b.Attempts(), id)
	}
	select {
	case <-a.Done():
	case <-ctx.Done():
		t.Fatal("the revoked consumer's item did not end")
	}
	if !errors.Is(a.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("Err of the lost item: got %v, want ErrSessionLost", a.Err())
	}
	err := a.Ack(ctx)
	if !errors.Is(err, queue.ErrClaimLost) || !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Ack of the lost item: got %v, want ErrClaimLost and ErrSessionLost", err)
	}
	if n, err := qb.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len after the failed Ack: got (%d, %v), want 1", n, err)
	}
	if err := b.Ack(ctx); err != nil {
		t.Fatalf("Ack of the redelivery: %v", err)
	}
	noneUnder(t, cli, prefix+"/")
}

// A claim key deleted by someone else (an operator) ends the Item with
// ErrLost; its Ack then fails with ErrClaimLost and leaves the item.
func TestClaimDeletedByOperator(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	q := newQueue(t, testutil.Session(t, cli), prefix)
	mustEnqueue(t, ctx, q, "job", 0)
	it := mustDequeue(t, ctx, q)
	if _, err := cli.Delete(ctx, it.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-it.Done():
	case <-ctx.Done():
		t.Fatal("item did not end")
	}
	if err := it.Ack(ctx); !errors.Is(err, queue.ErrClaimLost) || !errors.Is(err, lockstep.ErrLost) {
		t.Fatalf("Ack: got %v, want ErrClaimLost and ErrLost", err)
	}
	again := mustDequeue(t, ctx, q)
	if again.ID() != it.ID() || again.Attempts() != 2 {
		t.Fatalf("redelivery: got (%s, %d), want (%s, 2)", again.ID(), again.Attempts(), it.ID())
	}
	mustAck(t, ctx, again)
}

// A Dequeue whose ctx ends at any point leaves no claim and no place in the
// waiting line behind, and the items stay available.
func TestDequeueCancelLeavesNothing(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	prefix := testutil.Prefix(t)
	s := testutil.Session(t, cli)
	q := newQueue(t, s, prefix)
	const items = 20
	for i := 0; i < items; i++ {
		mustEnqueue(t, ctx, q, fmt.Sprint(i), 0)
	}
	var held []*queue.Item
	cancelled := 0
	for i := 0; i < 200 && len(held) < items; i++ {
		// Deadlines from zero to a few round trips, to land anywhere in
		// the read, the claim or the wait.
		short, cancel := context.WithTimeout(ctx, time.Duration(rand.N(3000))*time.Microsecond)
		it, err := q.Dequeue(short)
		cancel()
		switch {
		case err == nil:
			held = append(held, it)
		case errors.Is(err, context.DeadlineExceeded):
			cancelled++
		default:
			t.Fatalf("Dequeue: %v", err)
		}
		claims := keysUnder(t, cli, prefix+"/claims/")
		if len(claims) != len(held) {
			t.Fatalf("after %d cancelled and %d held: claims %v", cancelled, len(held), claims)
		}
		if ws := keysUnder(t, cli, prefix+"/waiters/"); len(ws) != 0 {
			t.Fatalf("waiter keys left: %v", ws)
		}
	}
	t.Logf("%d Dequeues cancelled, %d returned an item", cancelled, len(held))
	for _, it := range held {
		mustAck(t, ctx, it)
	}
	for n, _ := q.Len(ctx); n > 0; n, _ = q.Len(ctx) {
		mustAck(t, ctx, mustDequeue(t, ctx, q))
	}
	// What remains is the session's fence, which goes with the session.
	s.Close()
	noneUnder(t, cli, prefix+"/")
}

// A Dequeue waiting when its session ends returns an error wrapping the
// session's reason.
func TestDequeueReturnsWhenSessionEnds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	tests := []struct {
		name string
		end  func(s *lockstep.Session)
		want error
	}{
		{"closed", func(s *lockstep.Session) { s.Close() }, lockstep.ErrSessionClosed},
		{"revoked", func(s *lockstep.Session) { testutil.Revoke(t, cli, s) }, lockstep.ErrSessionLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			// One consumer waits at the head, one behind it.
			s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
			q := newQueue(t, s, prefix)
			head := dequeueAsync(ctx, q)
			behind := dequeueAsync(ctx, q)
			waitKeys(t, ctx, cli, prefix+"/waiters/", 2)
			tt.end(s)
			for _, ch := range []<-chan result{head, behind} {
				if r := await(t, ctx, ch); !errors.Is(r.err, tt.want) {
					t.Fatalf("Dequeue: got (%v, %v), want %v", r.it, r.err, tt.want)
				}
			}
		})
	}
}

// waitKeys waits until exactly n keys exist under prefix.
func waitKeys(t testing.TB, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		if len(keysUnder(t, cli, prefix)) == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never %d keys under %s: %v", n, prefix, keysUnder(t, cli, prefix))
		case <-time.After(5 * time.Millisecond):
		}
	}
}
