package semaphore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

// TestMemberRestart stops each member of a 3-member cluster in turn while
// waiters wait (their clients know all three members), releases a permit
// while it is down and another after it is back: every release still
// reaches the right waiter, in order.
func TestMemberRestart(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // after the sessions' cleanups
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}

	prefix := testutil.Prefix(t)
	const limit, waiters = 2, 6
	holders := newSem(t, testutil.Session(t, cli), prefix, limit)
	var held []*semaphore.Permit
	for range limit {
		held = append(held, acquire(t, ctx, holders))
	}
	out := make(chan grant, waiters)
	for i := range waiters {
		startWaiter(ctx, newSem(t, testutil.Session(t, cli), prefix, limit), i, out)
		waitKeys(t, ctx, cli, prefix, limit+i+1)
	}

	next := 0
	handoff := func() {
		t.Helper()
		releaseRetrying(t, ctx, held[0])
		held = held[1:]
		g := recvGrant(t, ctx, out)
		if g.i != next {
			t.Fatalf("granted waiter %d, want %d", g.i, next)
		}
		next++
		held = append(held, g.p)
	}
	for _, m := range c.Members() {
		if err := m.Stop(); err != nil {
			t.Fatalf("stop %s: %v", m.Name(), err)
		}
		handoff()
		if err := m.Restart(ctx); err != nil {
			t.Fatalf("restart %s: %v", m.Name(), err)
		}
		handoff()
	}
	for _, p := range held {
		releaseRetrying(t, ctx, p)
	}
}

// releaseRetrying releases p, retrying the failures a cluster that just
// lost a member returns (a timed-out proposal, no leader yet); the guarded
// delete makes a retry safe. A retry finds the key gone if the attempt that
// timed out was applied after all; it reports that as ErrLost.
func releaseRetrying(t *testing.T, ctx context.Context, p *semaphore.Permit) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		err := p.Release(ctx)
		if err == nil {
			return
		}
		if attempt > 0 && errors.Is(err, lockstep.ErrLost) {
			return // the attempt that timed out had deleted the key after all
		}
		if errors.Is(err, lockstep.ErrReleased) || errors.Is(err, lockstep.ErrLost) || ctx.Err() != nil {
			t.Fatalf("Release %s: %v", p.Key(), err)
		}
		t.Logf("Release %s: %v; retrying", p.Key(), err)
		if err := retry.Sleep(ctx, attempt); err != nil {
			t.Fatalf("Release %s: %v", p.Key(), err)
		}
	}
}
