package semaphore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A waiter that gives up while its client is cut off cannot delete its
// key, and its session lives on. Once the network is back the key must
// go, so that a waiter behind it gets the permit that comes free.
func TestCancelledWaiterLeavesNoGhost(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	holder := acquire(t, ctx, newSem(t, testutil.Session(t, cli), prefix, 1))

	cfg, proxy := testutil.ProxiedConfig(t)
	cut := newSem(t, testutil.Session(t, testutil.ClientWith(t, cfg), lockstep.WithTTL(30*time.Second)), prefix, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := cut.Acquire(wctx)
		errc <- err
	}()
	waitKeys(t, ctx, cli, prefix, 2)
	proxy.Blackhole()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Acquire: got %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("cancelled Acquire did not return")
	}
	proxy.Pass()

	next := newSem(t, testutil.Session(t, cli), prefix, 1)
	got := make(chan error, 1)
	go func() {
		short, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		p, err := next.Acquire(short)
		if err == nil {
			err = p.Release(ctx)
		}
		got <- err
	}()
	release(t, ctx, holder)
	if err := <-got; err != nil {
		t.Fatalf("Acquire behind the cancelled waiter: %v", err)
	}
}
