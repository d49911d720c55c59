package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A candidate that gives up while its client is cut off cannot delete its
// key, and its session lives on. Once the network is back the key must
// go: otherwise it becomes a leader that nobody is, which Observe reports
// and which every later candidate waits for.
func TestCancelledCandidateLeavesNoPhantom(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	leader := campaign(t, ctx, newElection(t, cli, prefix), "leader")

	cfg, proxy := testutil.ProxiedConfig(t)
	cut, err := election.New(testutil.Session(t, testutil.ClientWith(t, cfg), lockstep.WithTTL(30*time.Second)), prefix)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := campaignAsync(wctx, cut, "phantom")
	waitKeys(t, ctx, cli, prefix, 2)
	proxy.Blackhole()
	cancel()
	if r := await(t, ctx, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Campaign: got %v, want context.Canceled", r.err)
	}
	proxy.Pass()

	next := campaignAsync(ctx, newElection(t, cli, prefix), "next")
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 15*time.Second)
	defer cancelShort()
	r := await(t, short, next)
	if r.err != nil {
		t.Fatalf("Campaign behind the cancelled candidate: %v", r.err)
	}
	r.term.Resign(ctx)
}

// A term that took over a leftover key of its session and then waited
// knows its predecessor's lease: leaderjob asks whether it still exists.
func TestPredecessorAfterTakingOverALeftoverKey(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	first := campaign(t, ctx, newElection(t, cli, prefix), "first")
	counted, rpc := testutil.CountingClient(t)
	s := testutil.Session(t, counted)
	e := mustNew(t, s, prefix)
	if _, err := cli.Put(ctx, e.Key(), "stale", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	rpc.Reset()
	w := campaignAsync(ctx, e, "second")
	waitWatches(t, ctx, rpc, 3) // it waits for first
	if err := first.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.term.Resign(ctx)
	want := election.Leader{Value: "first", Key: first.Key(), Lease: first.Session().Lease(), Token: first.Token()}
	if got, ok := r.term.Predecessor(); !ok || got != want {
		t.Fatalf("Predecessor: got %+v, %v; want %+v, true", got, ok, want)
	}
}

// A lease revoked from outside is the session's loss, not someone's delete.
func TestProclaimAfterRevokeIsSessionLost(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	s := testutil.Session(t, cli)
	term := campaign(t, ctx, mustNew(t, s, testutil.Prefix(t)), "a")
	testutil.Revoke(t, cli, s)
	err := term.Proclaim(ctx, "b")
	if !errors.Is(err, election.ErrNotLeader) || !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Proclaim after revoke: got %v, want ErrNotLeader and ErrSessionLost", err)
	}
}

// A candidate cut off from etcd just as it starts to watch the one ahead
// of it still learns of its session's loss: clientv3's Watch does not
// return until the server answers, so the watch must end with the session.
func TestCampaignFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	leader := campaign(t, ctx, newElection(t, cli, prefix), "leader")
	defer leader.Resign(ctx)

	cut := newElection(t, testutil.CutAtFirstWatch(t), prefix, lockstep.WithTTL(2*time.Second))
	w := campaignAsync(ctx, cut, "waiter")
	if r := await(t, ctx, w); !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("Campaign: got (%v, %v), want error %v", r.term, r.err, lockstep.ErrSessionLost)
	}
}

// A waiting candidate keeps its place through an outage of its member
// that outlasts the client's own retries.
func TestWaitingCandidateRidesOutAnOutage(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	leader := campaign(t, ctx, newElection(t, cli, prefix), "leader")
	lossy, loser := testutil.LosingClient(t)
	w := campaignAsync(ctx, newElection(t, lossy, prefix, lockstep.WithTTL(30*time.Second)), "waiter")
	waitKeys(t, ctx, cli, prefix, 2)
	// Reads and writes fail for 6 s (the client retries a read for about
	// 2.5 s); the leader resigns meanwhile.
	loser.Outage("Range", nil, 6*time.Second)
	loser.Outage("Txn", nil, 6*time.Second)
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, w)
	if r.err != nil {
		t.Fatalf("Campaign through the outage: %v", r.err)
	}
	r.term.Resign(ctx)
}
