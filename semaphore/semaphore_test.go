package semaphore_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

func TestNewRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	live := testutil.Session(t, cli)
	closed := testutil.Session(t, cli)
	closed.Close()
	huge := math.MaxInt32
	huge++ // a variable, so that this compiles where int has 32 bits
	tests := []struct {
		name   string
		s      *lockstep.Session
		prefix string
		limit  int
		want   error
	}{
		{"nil session", nil, "/sem", 1, lockstep.ErrNilSession},
		{"closed session", closed, "/sem", 1, lockstep.ErrSessionClosed},
		{"empty prefix", live, "", 1, lockstep.ErrInvalidPrefix},
		{"prefix ending in two slashes", live, "/sem//", 1, lockstep.ErrInvalidPrefix},
		{"zero limit", live, "/sem", 0, semaphore.ErrInvalidLimit},
		{"negative limit", live, "/sem", -3, semaphore.ErrInvalidLimit},
		{"huge limit", live, "/sem", huge, semaphore.ErrInvalidLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sem, err := semaphore.New(tt.s, tt.prefix, tt.limit)
			if !errors.Is(err, tt.want) || sem != nil {
				t.Fatalf("New: got (%v, %v), want (nil, %v)", sem, err, tt.want)
			}
		})
	}
}

func TestAcquireAfterSessionEnds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	sem := newSem(t, s, testutil.Prefix(t), 2)
	s.Close()
	if _, err := sem.Acquire(ctx); !errors.Is(err, lockstep.ErrSessionClosed) {
		t.Fatalf("Acquire: got %v, want ErrSessionClosed", err)
	}
	if _, err := sem.TryAcquire(ctx); !errors.Is(err, lockstep.ErrSessionClosed) {
		t.Fatalf("TryAcquire: got %v, want ErrSessionClosed", err)
	}
}

func TestReleaseTwice(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	sem := newSem(t, testutil.Session(t, cli), testutil.Prefix(t), 2)
	p := acquire(t, ctx, sem)
	release(t, ctx, p)
	if err := p.Release(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("second Release: got %v, want ErrReleased", err)
	}
	if !errors.Is(p.Err(), lockstep.ErrReleased) {
		t.Fatalf("Err: got %v, want ErrReleased", p.Err())
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
}

func TestPermitsAndHolders(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	prefix := testutil.Prefix(t)
	sem := newSem(t, s, prefix, 3)

	var ps []*semaphore.Permit
	for range 3 {
		ps = append(ps, acquire(t, ctx, sem))
	}
	if _, err := sem.TryAcquire(ctx); !errors.Is(err, semaphore.ErrNoPermit) {
		t.Fatalf("TryAcquire with all permits held: got %v, want ErrNoPermit", err)
	}
	hs, err := sem.Holders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 {
		t.Fatalf("Holders: got %d, want 3", len(hs))
	}
	for i, h := range hs {
		p := ps[i]
		if h.Key != p.Key() || h.Token != p.Token() || h.Lease != s.Lease() {
			t.Errorf("holder %d: got %+v, want key %s token %d lease %x", i, h, p.Key(), p.Token(), s.Lease())
		}
		if p.Err() != nil {
			t.Errorf("permit %d: Err while held: %v", i, p.Err())
		}
	}
	if !(ps[0].Token() < ps[1].Token() && ps[1].Token() < ps[2].Token()) {
		t.Errorf("tokens not increasing: %d %d %d", ps[0].Token(), ps[1].Token(), ps[2].Token())
	}

	// A permit fences writes: the guard holds while held and fails after.
	fenced := func(p *semaphore.Permit) bool {
		resp, err := cli.Txn(ctx).If(p.IsOwner()).Then(clientv3.OpPut(prefix+"-data", "x")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !fenced(ps[1]) {
		t.Error("IsOwner false while the permit is held")
	}
	release(t, ctx, ps[1])
	if fenced(ps[1]) {
		t.Error("IsOwner true after Release")
	}

	p, err := sem.TryAcquire(ctx)
	if err != nil {
		t.Fatalf("TryAcquire with a free permit: %v", err)
	}
	for _, q := range []*semaphore.Permit{ps[0], ps[2], p} {
		release(t, ctx, q)
	}
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after every release: %v", ks)
	}
	if hs, err := sem.Holders(ctx); err != nil || len(hs) != 0 {
		t.Fatalf("Holders when free: got (%v, %v), want none", hs, err)
	}
}

// TestFIFO queues waiters in a known order, then releases one holder at a
// time and checks who is granted next. Releasing the oldest or a middle
// holder (never the first waiter's predecessor, never the permit just
// granted) strands a waiter that watches only its predecessor, and one that
// is never told it moved to the front.
func TestFIFO(t *testing.T) {
	for _, tt := range []struct {
		name string
		pick func(held []*semaphore.Permit) int // which holder to release
	}{
		{"release oldest", func([]*semaphore.Permit) int { return 0 }},
		{"release middle", func(held []*semaphore.Permit) int { return len(held) / 2 }},
		{"release newest", func(held []*semaphore.Permit) int { return len(held) - 1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cli := testutil.Client(t)
			ctx := testutil.Context(t, 30*time.Second)
			prefix := testutil.Prefix(t)
			const limit, waiters = 3, 8
			sem := newSem(t, testutil.Session(t, cli), prefix, limit)

			var held []*semaphore.Permit
			for range limit {
				held = append(held, acquire(t, ctx, sem))
			}
			out := make(chan grant, waiters)
			for i := range waiters {
				// Each waiter on its own session, queued only after the
				// previous one's key exists.
				startWaiter(ctx, newSem(t, testutil.Session(t, cli), prefix, limit), i, out)
				waitKeys(t, ctx, cli, prefix, limit+i+1)
			}

			var order []int
			for len(order) < waiters {
				i := tt.pick(held)
				release(t, ctx, held[i])
				held = slices.Delete(held, i, i+1)
				g := recvGrant(t, ctx, out)
				order = append(order, g.i)
				held = append(held, g.p)
				select {
				case g := <-out:
					t.Fatalf("waiter %d was granted a permit without a release", g.i)
				default:
				}
			}
			for _, p := range held {
				release(t, ctx, p)
			}
			want := make([]int, waiters)
			for i := range want {
				want[i] = i
			}
			if !slices.Equal(order, want) {
				t.Fatalf("grant order: got %v, want %v", order, want)
			}
		})
	}
}

func TestTwoGoroutinesOneSession(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	s := testutil.Session(t, cli)

	t.Run("limit 2 both hold", func(t *testing.T) {
		sem := newSem(t, s, testutil.Prefix(t), 2)
		out := make(chan grant, 2)
		startWaiter(ctx, sem, 0, out)
		startWaiter(ctx, sem, 1, out)
		a, b := recvGrant(t, ctx, out), recvGrant(t, ctx, out)
		if a.p.Key() == b.p.Key() {
			t.Fatalf("both permits use key %s", a.p.Key())
		}
		release(t, ctx, a.p)
		if b.p.Err() != nil {
			t.Fatalf("releasing one permit ended the other: %v", b.p.Err())
		}
		release(t, ctx, b.p)
	})

	t.Run("limit 1 excludes", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		sem := newSem(t, s, prefix, 1)
		first := acquire(t, ctx, sem)
		if _, err := sem.TryAcquire(ctx); !errors.Is(err, semaphore.ErrNoPermit) {
			t.Fatalf("TryAcquire on the same session: got %v, want ErrNoPermit", err)
		}
		out := make(chan grant, 1)
		startWaiter(ctx, sem, 1, out)
		waitKeys(t, ctx, cli, prefix, 2)
		select {
		case g := <-out:
			t.Fatalf("second goroutine got a permit while the first holds: %v", g.err)
		default:
		}
		release(t, ctx, first)
		release(t, ctx, recvGrant(t, ctx, out).p)
	})
}

func TestCancelWhileWaitingLeavesNoKey(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	tests := []struct {
		name string
		// ctx returns the waiters' context and ends it once both wait (a
		// deadline ends it by itself; the waiters may then not have queued
		// yet, which must be just as clean).
		ctx  func() (wctx context.Context, end func())
		want error
	}{
		{"cancel", func() (context.Context, func()) {
			wctx, cancel := context.WithCancel(ctx)
			return wctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, func()) {
			wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			t.Cleanup(cancel)
			return wctx, func() { <-wctx.Done() }
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			holder := acquire(t, ctx, newSem(t, testutil.Session(t, cli), prefix, 1))
			s := testutil.Session(t, cli)
			sem := newSem(t, s, prefix, 1)
			// One waiter first in line, one behind it: they wait differently.
			wctx, end := tt.ctx()
			out := make(chan grant, 2)
			startWaiter(wctx, sem, 0, out)
			if tt.want == context.Canceled {
				waitKeys(t, ctx, cli, prefix, 2)
			}
			startWaiter(wctx, sem, 1, out)
			if tt.want == context.Canceled {
				waitKeys(t, ctx, cli, prefix, 3)
			}
			end()
			for range 2 {
				select {
				case g := <-out:
					if !errors.Is(g.err, tt.want) || g.p != nil {
						t.Fatalf("waiter %d: got (%v, %v), want (nil, %v)", g.i, g.p, g.err, tt.want)
					}
				case <-ctx.Done():
					t.Fatal("Acquire did not return after its ctx ended")
				}
			}
			if ks := keysUnder(t, ctx, cli, prefix); !slices.Equal(ks, []string{holder.Key()}) {
				t.Fatalf("keys after cancel: got %v, want only the holder's %s", ks, holder.Key())
			}
			// The semaphore still works for this session.
			release(t, ctx, holder)
			release(t, ctx, acquire(t, ctx, sem))
		})
	}
}

func TestSessionLossFreesPermit(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	holderSession := testutil.Session(t, cli, lockstep.WithTTL(5*time.Second))
	held := acquire(t, ctx, newSem(t, holderSession, prefix, 1))

	out := make(chan grant, 1)
	startWaiter(ctx, newSem(t, testutil.Session(t, cli), prefix, 1), 0, out)
	waitKeys(t, ctx, cli, prefix, 2)

	testutil.Revoke(t, cli, holderSession) // as if the holder crashed and its lease expired
	g := recvGrant(t, ctx, out)
	select {
	case <-held.Done():
	case <-ctx.Done():
		t.Fatal("the lost permit's Done did not close")
	}
	if !errors.Is(held.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("lost permit Err: got %v, want ErrSessionLost", held.Err())
	}
	release(t, ctx, g.p)
}

func TestSessionEndsWhileWaiting(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	holder := acquire(t, ctx, newSem(t, testutil.Session(t, cli), prefix, 1))
	s := testutil.Session(t, cli)
	out := make(chan grant, 1)
	startWaiter(ctx, newSem(t, s, prefix, 1), 0, out)
	waitKeys(t, ctx, cli, prefix, 2)
	s.Close()
	select {
	case g := <-out:
		if !errors.Is(g.err, lockstep.ErrSessionClosed) {
			t.Fatalf("Acquire: got %v, want an error wrapping ErrSessionClosed", g.err)
		}
	case <-ctx.Done():
		t.Fatal("Acquire did not return after its session closed")
	}
	if ks := keysUnder(t, ctx, cli, prefix); !slices.Equal(ks, []string{holder.Key()}) {
		t.Fatalf("keys: got %v, want only the holder's", ks)
	}
	release(t, ctx, holder)
}

// A waiter cut off from etcd just as it starts to watch the holders still
// learns of its session's loss: clientv3's Watch does not return until the
// server answers, so the watch must end with the session.
func TestAcquireFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	prefix := testutil.Prefix(t)
	holder := acquire(t, ctx, newSem(t, testutil.Session(t, cli), prefix, 1))
	defer holder.Release(ctx)

	ws := testutil.Session(t, testutil.CutAtFirstWatch(t), lockstep.WithTTL(2*time.Second))
	out := make(chan grant, 1)
	startWaiter(ctx, newSem(t, ws, prefix, 1), 0, out)
	select {
	case g := <-out:
		if !errors.Is(g.err, lockstep.ErrSessionLost) {
			t.Fatalf("Acquire: got (%v, %v), want error %v", g.p, g.err, lockstep.ErrSessionLost)
		}
	case <-ctx.Done():
		t.Fatal("Acquire did not return after its session was lost")
	}
}

// TestWaiterKeyDeleted: an operator deletes a waiter's key. The waiter
// learns it lost its place; the one behind it moves up.
func TestWaiterKeyDeleted(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	holder := acquire(t, ctx, newSem(t, testutil.Session(t, cli), prefix, 1))
	out := make(chan grant, 2)
	for i := range 2 {
		startWaiter(ctx, newSem(t, testutil.Session(t, cli), prefix, 1), i, out)
		waitKeys(t, ctx, cli, prefix, i+2)
	}
	ks := keysUnder(t, ctx, cli, prefix)
	if _, err := cli.Delete(ctx, ks[1]); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-out:
		if g.i != 0 || !errors.Is(g.err, lockstep.ErrLost) {
			t.Fatalf("waiter %d: got %v, want waiter 0 with ErrLost", g.i, g.err)
		}
	case <-ctx.Done():
		t.Fatal("the waiter whose key was deleted did not return")
	}
	release(t, ctx, holder)
	g := recvGrant(t, ctx, out)
	if g.i != 1 {
		t.Fatalf("granted waiter %d, want 1", g.i)
	}
	release(t, ctx, g.p)
}

func TestLimitMismatch(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	two := newSem(t, testutil.Session(t, cli), prefix, 2)
	held := acquire(t, ctx, two)

	three := newSem(t, testutil.Session(t, cli), prefix, 3)
	calls := []struct {
		name string
		call func() error
	}{
		{"Acquire", func() error { _, err := three.Acquire(ctx); return err }},
		{"TryAcquire", func() error { _, err := three.TryAcquire(ctx); return err }},
		{"Holders", func() error { _, err := three.Holders(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, semaphore.ErrLimitMismatch) {
				t.Fatalf("got %v, want ErrLimitMismatch", err)
			}
			if ks := keysUnder(t, ctx, cli, prefix); !slices.Equal(ks, []string{held.Key()}) {
				t.Fatalf("keys: got %v, want only %s", ks, held.Key())
			}
		})
	}

	// A waiter with the old limit still works, and a client with a new
	// limit is refused while one of the old limit waits.
	out := make(chan grant, 1)
	startWaiter(ctx, two, 0, out)
	waitKeys(t, ctx, cli, prefix, 2)
	if _, err := three.TryAcquire(ctx); !errors.Is(err, semaphore.ErrLimitMismatch) {
		t.Fatalf("TryAcquire behind a waiter: got %v, want ErrLimitMismatch", err)
	}
	release(t, ctx, held)
	release(t, ctx, recvGrant(t, ctx, out).p)

	// Changing the limit on purpose: once nobody holds or waits, the new
	// limit applies.
	p := acquire(t, ctx, three)
	if _, err := two.TryAcquire(ctx); !errors.Is(err, semaphore.ErrLimitMismatch) {
		t.Fatalf("old limit after the change: got %v, want ErrLimitMismatch", err)
	}
	release(t, ctx, p)
}

func TestRoundTrips(t *testing.T) {
	cli, rpc := testutil.CountingClient(t)
	ctx := testutil.Context(t, 10*time.Second)
	sem := newSem(t, testutil.Session(t, cli), testutil.Prefix(t), 1)

	var p *semaphore.Permit
	steps := []struct {
		name string
		op   func() error
		want int
	}{
		{"uncontended Acquire", func() (err error) { p, err = sem.Acquire(ctx); return err }, 1},
		{"Holders", func() error { _, err := sem.Holders(ctx); return err }, 1},
		{"TryAcquire without a permit", func() error {
			if _, err := sem.TryAcquire(ctx); !errors.Is(err, semaphore.ErrNoPermit) {
				return err
			}
			return nil
		}, 2},
		{"Release", func() error { return p.Release(ctx) }, 1},
		{"TryAcquire with a permit", func() (err error) { p, err = sem.TryAcquire(ctx); return err }, 1},
		{"Release after TryAcquire", func() error { return p.Release(ctx) }, 1},
	}
	for _, st := range steps {
		rpc.Reset()
		if err := st.op(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := rpc.KV(); got != st.want {
			t.Errorf("%s: got %d KV round trips, want %d", st.name, got, st.want)
		}
	}
}
