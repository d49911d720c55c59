package barrier_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A short TTL makes a revoked session notice quickly (its keepalive fails
// within a third of TTL minus margin).
var shortTTL = lockstep.WithTTL(2 * time.Second)

// TestDoubleBarrierDeathBeforeOpen checks that a participant whose session
// dies before the round opens no longer counts, and that its Enter reports
// the loss.
func TestDoubleBarrierDeathBeforeOpen(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	s := testutil.Session(t, cli, shortTTL)
	victim, err := barrier.NewDouble(s, prefix, 3)
	if err != nil {
		t.Fatal(err)
	}
	entering := goCall(func() error { return victim.Enter(ctx) })
	waitKey(t, ctx, cli, victim.Key())
	testutil.Revoke(t, cli, s)
	if err := receive(t, ctx, entering, "Enter"); !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Enter of the dead participant: got %v, want ErrSessionLost", err)
	}
	ds := participants(t, cli, prefix, 3, 3)
	noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

// TestDoubleBarrierDeathAfterOpen checks that a participant whose session
// dies after the round opened counts as having left, whichever moment of
// the others' Leave it dies at, and that its own Leave reports the loss.
func TestDoubleBarrierDeathAfterOpen(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	tests := []struct {
		name string
		// waiting: how many of the two survivors are blocked in Leave when
		// the third dies.
		waiting int
	}{
		{"before the others leave", 0},
		{"while one waits in Leave", 1},
		{"while both wait in Leave", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			s := testutil.Session(t, cli, shortTTL)
			victim, err := barrier.NewDouble(s, prefix, 3)
			if err != nil {
				t.Fatal(err)
			}
			ds := participants(t, cli, prefix, 2, 3)
			noErrors(t, "Enter", all(append([]*barrier.DoubleBarrier{victim}, ds...), func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
			var leaving []<-chan error
			for _, d := range ds[:tt.waiting] {
				leaving = append(leaving, goCall(func() error { return d.Leave(ctx) }))
				waitKey(t, ctx, cli, d.Key()+".watch")
			}
			testutil.Revoke(t, cli, s)
			for _, d := range ds[tt.waiting:] {
				leaving = append(leaving, goCall(func() error { return d.Leave(ctx) }))
			}
			for i, ch := range leaving {
				if err := receive(t, ctx, ch, "Leave"); err != nil {
					t.Fatalf("survivor %d: %v", i, err)
				}
			}
			if err := victim.Leave(ctx); !errors.Is(err, lockstep.ErrSessionLost) {
				t.Fatalf("Leave of the dead participant: got %v, want ErrSessionLost", err)
			}
			if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
				t.Fatalf("keys left: %v", ks)
			}
		})
	}
}

// TestDoubleBarrierOrphanedRound checks that when every participant of an
// open round dies, a participant waiting for the next round closes the
// orphaned round and goes on.
func TestDoubleBarrierOrphanedRound(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	var dead []*lockstep.Session
	var first []*barrier.DoubleBarrier
	for range 2 {
		s := testutil.Session(t, cli, shortTTL)
		d, err := barrier.NewDouble(s, prefix, 2)
		if err != nil {
			t.Fatal(err)
		}
		dead, first = append(dead, s), append(first, d)
	}
	noErrors(t, "Enter", all(first, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	// The late participant finds the round open and waits for it to close:
	// once its first transaction has completed, it is blocked.
	pcli, p := probeClient(t)
	lateOne, err := barrier.NewDouble(testutil.Session(t, pcli), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	next := append([]*barrier.DoubleBarrier{lateOne}, participants(t, cli, prefix, 1, 2)...)
	late := goCall(func() error { return next[0].Enter(ctx) })
	p.waitCalls(ctx, 1)
	for _, s := range dead {
		testutil.Revoke(t, cli, s)
	}
	if err := next[1].Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, ctx, late, "Enter"); err != nil {
		t.Fatal(err)
	}
	if next[0].Round() != next[1].Round() || next[0].Round() <= first[0].Round() {
		t.Fatalf("rounds %d and %d, want one round after %d", next[0].Round(), next[1].Round(), first[0].Round())
	}
	noErrors(t, "Leave", all(next, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left: %v", ks)
	}
}

// A participant cut off from etcd just as it starts to watch for the
// round's opening still learns of its session's loss: clientv3's Watch does
// not return until the server answers, so the watch must end with the
// session.
func TestDoubleBarrierEnterFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	d, err := barrier.NewDouble(testutil.Session(t, testutil.CutAtFirstWatch(t), shortTTL), testutil.Prefix(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := receive(t, ctx, goCall(func() error { return d.Enter(ctx) }), "Enter"); !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Enter: got %v, want ErrSessionLost", err)
	}
}

// Leave too learns of its session's loss when cut off just as it starts to
// watch for the round's close: both parties entered, the cut one leaves
// first. Only the watch stream of Leave's ctx is cut, so Enter goes through.
func TestDoubleBarrierLeaveFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	cut, leaveCtx := cutAtWatchUnder(t, ctx)
	leaver, err := barrier.NewDouble(testutil.Session(t, cut, shortTTL), prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	ds := append(participants(t, cli, prefix, 1, 2), leaver)
	noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
	if err := receive(t, ctx, goCall(func() error { return leaver.Leave(leaveCtx) }), "Leave"); !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Leave: got %v, want ErrSessionLost", err)
	}
}

// cutAtWatchUnder returns a client of the shared server whose network
// silently fails (a blackhole) the moment it opens a watch stream for a
// call made under the returned ctx, derived from ctx. clientv3 gives
// watches whose ctxs carry other metadata a stream of their own, so calls
// made under other ctxs, and their watches, go through until then.
func cutAtWatchUnder(t *testing.T, ctx context.Context) (*clientv3.Client, context.Context) {
	t.Helper()
	const mark = "lockstep-test-cut"
	cfg, p := testutil.ProxiedConfig(t)
	var once sync.Once
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithStreamInterceptor(
		func(sctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if md, _ := metadata.FromOutgoingContext(sctx); method == "/etcdserverpb.Watch/Watch" && len(md.Get(mark)) > 0 {
				once.Do(p.Blackhole)
			}
			return streamer(sctx, desc, cc, method, opts...)
		}))
	return testutil.ClientWith(t, cfg), metadata.AppendToOutgoingContext(ctx, mark, "1")
}
