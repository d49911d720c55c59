package election_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func next(t *testing.T, ctx context.Context, ch <-chan election.Leader) election.Leader {
	t.Helper()
	select {
	case ld, ok := <-ch:
		if !ok {
			t.Fatal("observe channel closed")
		}
		return ld
	case <-ctx.Done():
		t.Fatal("no observation")
		return election.Leader{}
	}
}

func expect(t *testing.T, ctx context.Context, ch <-chan election.Leader, want election.Leader) {
	t.Helper()
	if got := next(t, ctx, ch); got != want {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
}

// drain waits for the channel to close after its ctx was cancelled.
func drain(t *testing.T, ch <-chan election.Leader) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("observe channel not closed after its ctx ended")
		}
	}
}

func leaderOf(term *election.Term) election.Leader {
	return election.Leader{Value: term.Value(), Key: term.Key(), Lease: term.Session().Lease(), Token: term.Token()}
}

func TestObserveReportsEveryChange(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	ocli, rpc := testutil.CountingClient(t)
	obs, err := election.NewObserver(ocli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	a := newElection(t, cli, prefix)
	b := newElection(t, cli, prefix)

	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	expect(t, ctx, ch, election.Leader{}) // nobody leads yet

	ta := campaign(t, ctx, a, "a1")
	expect(t, ctx, ch, leaderOf(ta))
	for _, v := range []string{"a2", "a2"} { // the same value again is a Proclaim too
		if err := ta.Proclaim(ctx, v); err != nil {
			t.Fatal(err)
		}
		expect(t, ctx, ch, leaderOf(ta))
	}
	got := campaignAsync(ctx, b, "b1") // a waiting candidate changes nothing
	waitKeys(t, ctx, cli, prefix, 2)
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	expect(t, ctx, ch, leaderOf(r.term))
	if err := r.term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, ctx, ch, election.Leader{})

	stop()
	drain(t, ch)
	// The observer read once, then only watched: one event per change of
	// a candidate key (a's campaign and two proclaims, b's campaign, two
	// resignations), none of which needed a read.
	if got := rpc.KV(); got != 1 {
		t.Fatalf("observer KV RPCs: got %d, want 1", got)
	}
	if got := rpc.WatchEvents(); got != 6 {
		t.Fatalf("observer watch events: got %d, want 6", got)
	}
}

// An observer whose watch falls behind a compaction (here: cut off by a
// proxy while the election changes and is compacted) reads the election
// again and reports the current state once.
func TestObserveSurvivesCompaction(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	pcli, proxy := proxiedClient(t)
	obs, err := election.NewObserver(pcli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	a := newElection(t, cli, prefix)
	b := newElection(t, cli, prefix)
	ta := campaign(t, ctx, a, "a")

	octx, stop := context.WithCancel(ctx)
	defer stop()
	ch := obs.Observe(octx)
	expect(t, ctx, ch, leaderOf(ta))

	proxy.Blackhole()
	got := campaignAsync(ctx, b, "b1")
	waitKeys(t, ctx, cli, prefix, 2)
	ta.Resign(ctx)
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := r.term.Proclaim(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "compact-me")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	proxy.Pass()

	// b1 is not reported: it happened during the gap.
	expect(t, ctx, ch, leaderOf(r.term))
	if err := r.term.Proclaim(ctx, "b3"); err != nil {
		t.Fatal(err)
	}
	expect(t, ctx, ch, leaderOf(r.term))
	r.term.Resign(ctx)
	expect(t, ctx, ch, election.Leader{})
	stop()
	drain(t, ch)
}

// An observer whose member is stopped and restarted goes on reporting, and
// what it reports never goes back in time.
func TestObserveSurvivesMemberRestart(t *testing.T) {
	ctx := testutil.Context(t, 90*time.Second)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Observe through a follower, campaign through another member.
	var watched, other *embedded.Member
	for _, m := range c.Members() {
		switch {
		case m == leader:
		case watched == nil:
			watched = m
		default:
			other = m
		}
	}
	ocli, err := watched.Client()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := other.Client()
	if err != nil {
		t.Fatal(err)
	}
	prefix := "/test/observe-restart"
	obs, err := election.NewObserver(ocli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	a := mustNew(t, sa, prefix)
	ta := campaign(t, ctx, a, "a")

	octx, stop := context.WithCancel(ctx)
	defer stop()
	ch := obs.Observe(octx)
	expect(t, ctx, ch, leaderOf(ta))

	if err := watched.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ta.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	sb, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	tb := campaign(t, ctx, mustNew(t, sb, prefix), "b")
	if err := watched.Restart(ctx); err != nil {
		t.Fatal(err)
	}

	want := leaderOf(tb)
	var prev election.Leader
	for {
		got := next(t, ctx, ch)
		if got.Token != 0 && got.Token < prev.Token {
			t.Fatalf("observed %+v after %+v: went back in time", got, prev)
		}
		if got == want {
			break
		}
		if got.Token != 0 {
			prev = got
		}
	}
	if err := tb.Proclaim(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	expect(t, ctx, ch, leaderOf(tb))
	stop()
	drain(t, ch)
}
