package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// A panic in Do's fn unlocks the mutex before it goes on up: a server that
// recovers panics (net/http does) keeps working.
func TestDoUnlocksOnPanic(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	m := newMutex(t, testutil.Session(t, cli), prefix)
	got := func() (p any) {
		defer func() { p = recover() }()
		m.Do(ctx, func(context.Context, *mutex.Lock) error { panic("boom") })
		return nil
	}()
	if got != "boom" {
		t.Fatalf("recovered %v, want the panic of fn", got)
	}
	if keys := queue(t, ctx, cli, prefix); len(keys) != 0 {
		t.Fatalf("keys after the panic: %v, want none", keys)
	}
	// The same session locks again at once.
	l := mustLock(t, ctx, m)
	l.Unlock(ctx)
}

// An unlock that cannot get through at first (the client is cut off as fn
// returns) is retried while Do's ctx and the session live: Do does not
// report a deadline of its own as the caller's, and leaves no key.
func TestDoUnlockRidesOutAnOutage(t *testing.T) {
	ctx := testutil.Context(t, 80*time.Second)
	cfg, proxy := testutil.ProxiedConfig(t)
	cli := testutil.ClientWith(t, cfg)
	prefix := testutil.Prefix(t)
	m := newMutex(t, testutil.Session(t, cli, lockstep.WithTTL(30*time.Second)), prefix)
	var heal sync.WaitGroup
	defer heal.Wait()
	err := m.Do(ctx, func(context.Context, *mutex.Lock) error {
		proxy.Blackhole()
		heal.Go(func() {
			time.Sleep(7 * time.Second)
			proxy.Pass()
		})
		return nil
	})
	if err != nil {
		t.Fatalf("Do: got %v, want nil", err)
	}
	if keys := queue(t, ctx, testutil.Client(t), prefix); len(keys) != 0 {
		t.Fatalf("keys after Do: %v, want none", keys)
	}
}

// A waiter that gives up while its client is cut off cannot delete its
// key; its session lives on. The key must not hold up the waiters behind
// it once the network is back.
func TestCancelledWaiterLeavesNoGhost(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))

	cfg, proxy := testutil.ProxiedConfig(t)
	cut := newMutex(t, testutil.Session(t, testutil.ClientWith(t, cfg), lockstep.WithTTL(30*time.Second)), prefix)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := lockAsync(wctx, cut)
	waitQueue(t, ctx, cli, prefix, 2)
	proxy.Blackhole()
	cancel()
	if r := await(t, ctx, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Lock: got %v, want context.Canceled", r.err)
	}
	proxy.Pass()

	next := lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
	holder.Unlock(ctx)
	short, cancelShort := context.WithTimeout(ctx, 15*time.Second)
	defer cancelShort()
	r := await(t, short, next)
	if r.err != nil {
		t.Fatalf("Lock behind the cancelled waiter: %v", r.err)
	}
	r.l.Unlock(ctx)
}

// A session closed while a lock is held, without Unlock, is not kept
// alive by the lock's in-process bookkeeping.
func TestClosedSessionIsNotPinned(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	wp := func() weak.Pointer[lockstep.Session] {
		s, err := lockstep.NewSession(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		m := newMutex(t, s, prefix)
		if _, err := m.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		return weak.Make(s)
	}()
	// The handle's watcher and session callbacks end after Close returns,
	// later on a loaded machine: what must hold is that they end, so poll
	// until the test's deadline rather than for a fixed time.
	for wp.Value() != nil {
		runtime.GC()
		select {
		case <-ctx.Done():
			t.Fatal("the closed session is still reachable")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Goroutines of one session take the mutex in the order they asked for
// it, as waiters of different sessions do.
func TestSameSessionWaitersAreFIFO(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	m := newMutex(t, testutil.Session(t, cli), testutil.Prefix(t))
	first := mustLock(t, ctx, m)
	const n = 6
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			l, err := m.Lock(ctx)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			l.Unlock(ctx)
		})
		time.Sleep(50 * time.Millisecond) // let it queue before the next
	}
	first.Unlock(ctx)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(order), "[0 1 2 3 4 5]"; got != want {
		t.Fatalf("order: got %s, want %s", got, want)
	}
}
