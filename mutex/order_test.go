package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

func TestWaitersAreServedInOrder(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))

	// Queue five waiters one after the other, each on its own session.
	const n = 5
	waiters := make([]<-chan result, n)
	for i := range waiters {
		waiters[i] = lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
		waitQueue(t, ctx, cli, prefix, i+2)
	}
	order := queue(t, ctx, cli, prefix)
	prev := holder
	for i, w := range waiters {
		if err := prev.Unlock(ctx); err != nil {
			t.Fatalf("Unlock %d: %v", i, err)
		}
		r := await(t, ctx, w)
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		if r.l.Key() != order[i+1] {
			t.Fatalf("waiter %d got key %s, want %s (queue %v)", i, r.l.Key(), order[i+1], order)
		}
		if r.l.Token() <= prev.Token() {
			t.Fatalf("waiter %d: token %d after %d, want increasing", i, r.l.Token(), prev.Token())
		}
		prev = r.l
	}
	prev.Unlock(ctx)
}

func TestWaiterBehindALeaverReadsOnce(t *testing.T) {
	// A waiter whose predecessor gives up waits for the next key ahead.
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
	leaverCtx, leave := context.WithCancel(ctx)
	leaver := lockAsync(leaverCtx, newMutex(t, testutil.Session(t, cli), prefix))
	waitQueue(t, ctx, cli, prefix, 2)
	last := lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
	waitQueue(t, ctx, cli, prefix, 3)

	leave()
	if r := await(t, ctx, leaver); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter: got %v, want context.Canceled", r.err)
	}
	waitQueue(t, ctx, cli, prefix, 2)
	stillLocked(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
	holder.Unlock(ctx)
	r := await(t, ctx, last)
	if r.err != nil {
		t.Fatalf("last waiter: %v", r.err)
	}
	r.l.Unlock(ctx)
}

func TestGoroutinesSharingASessionExclude(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	prefix := testutil.Prefix(t)
	// Two Mutex values of one session and one prefix share the key; they
	// must still exclude each other, like one Mutex used twice.
	m1, m2 := newMutex(t, s, prefix), newMutex(t, s, prefix)
	for _, second := range []*mutex.Mutex{m1, m2} {
		first := mustLock(t, ctx, m1)
		stillLocked(t, ctx, second)
		if _, err := second.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
			t.Fatalf("TryLock: got %v, want ErrLocked", err)
		}
		w := lockAsync(ctx, second)
		if err := first.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		r := await(t, ctx, w)
		if r.err != nil {
			t.Fatalf("second Lock: %v", r.err)
		}
		if r.l.Token() <= first.Token() {
			t.Fatalf("token %d after %d, want increasing", r.l.Token(), first.Token())
		}
		if !errors.Is(first.Err(), errReleased) || r.l.Err() != nil {
			t.Fatalf("after handoff: first.Err %v, second.Err %v", first.Err(), r.l.Err())
		}
		r.l.Unlock(ctx)
	}
}

func TestContextCancelRemovesWaiterKey(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 300*time.Millisecond) }, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
			m := newMutex(t, testutil.Session(t, cli), prefix)
			wctx, cancel := tt.ctx()
			defer cancel()
			w := lockAsync(wctx, m)
			waitQueue(t, ctx, cli, prefix, 2)
			if tt.want == context.Canceled {
				cancel()
			}
			if r := await(t, ctx, w); !errors.Is(r.err, tt.want) {
				t.Fatalf("Lock: got %v, want %v", r.err, tt.want)
			}
			if got, want := queue(t, ctx, cli, prefix), []string{holder.Key()}; !equal(got, want) {
				t.Fatalf("keys after cancel: got %v, want %v", got, want)
			}
			// The session can queue again.
			w = lockAsync(ctx, m)
			waitQueue(t, ctx, cli, prefix, 2)
			holder.Unlock(ctx)
			r := await(t, ctx, w)
			if r.err != nil {
				t.Fatal(r.err)
			}
			r.l.Unlock(ctx)
		})
	}
}
