package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// proxiedClient returns a client of the shared server whose traffic goes
// through a fault proxy.
func proxiedClient(t *testing.T) (*clientv3.Client, *faultproxy.Proxy) {
	t.Helper()
	cfg, p := testutil.ProxiedConfig(t)
	return testutil.ClientWith(t, cfg), p
}

// A candidate whose lease is revoked while it waits never returns as
// leader, even when the leader resigns right after.
func TestNoPhantomLeaderAfterRevoke(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	a := newElection(t, cli, prefix)
	sb := testutil.Session(t, cli)
	b := mustNew(t, sb, prefix)
	ta := campaign(t, ctx, a, "a")
	got := campaignAsync(ctx, b, "b")
	waitKeys(t, ctx, cli, prefix, 2)

	testutil.Revoke(t, cli, sb)
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, got)
	if r.term != nil || !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("Campaign after its lease was revoked: got (%v, %v), want (nil, ErrSessionLost)", r.term, r.err)
	}
}

// A candidate whose session expires while it waits (it cannot reach the
// server) returns an error when the session ends, not a term, although
// etcd still has its key, now the oldest, until the lease expires there.
func TestNoPhantomLeaderAfterSessionExpiry(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	pcli, proxy := proxiedClient(t)
	a := newElection(t, cli, prefix)
	sb := testutil.Session(t, pcli, lockstep.WithTTL(2*time.Second))
	b := mustNew(t, sb, prefix)
	ta := campaign(t, ctx, a, "a")
	got := campaignAsync(ctx, b, "b")
	waitKeys(t, ctx, cli, prefix, 2)

	proxy.Blackhole()
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, got)
	if r.term != nil || !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("Campaign whose session expired: got (%v, %v), want (nil, ErrSessionLost)", r.term, r.err)
	}
	select {
	case <-sb.Done():
	default:
		t.Fatal("Campaign returned before its session ended")
	}
	proxy.Pass()
}

// A Resign that cannot get through ends the term all the same: the
// session deletes the leader key once the network is back, so the next
// candidate takes over without waiting for the lease.
func TestResignThatCannotGetThroughStillResigns(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	pcli, proxy := proxiedClient(t)
	e := newElection(t, pcli, prefix, lockstep.WithTTL(20*time.Second))
	term := campaign(t, ctx, e, "a")
	next := campaignAsync(ctx, newElection(t, cli, prefix), "b")
	waitKeys(t, ctx, cli, prefix, 2)

	proxy.Blackhole()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := term.Resign(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Resign through a blackhole: got %v, want DeadlineExceeded", err)
	}
	if !errors.Is(term.Err(), lockstep.ErrReleased) {
		t.Fatalf("Err after a Resign that did not get through: got %v, want ErrReleased", term.Err())
	}
	if err := term.Resign(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("Resign after Resign: got %v, want ErrReleased", err)
	}
	proxy.Pass()
	r := await(t, ctx, next)
	if r.err != nil {
		t.Fatalf("next candidate: %v", r.err)
	}
	r.term.Resign(ctx)
}

// A Campaign whose transaction is lost with its connection tries again and
// leads. (Here the proxy drops the transaction before the server sees it;
// a lost attempt that was applied leaves a key, which the retry takes over
// as TestCampaignTakesOverLeftoverKey shows.)
func TestCampaignRetriesOnBrokenConnection(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	cfg, p := testutil.ProxiedConfig(t)
	rpc := testutil.NewRPCCounter()
	rpc.Count(&cfg)
	prefix := testutil.Prefix(t)
	e := newElection(t, testutil.ClientWith(t, cfg), prefix)

	p.SetDelay(2 * time.Second) // the transaction waits in the proxy
	rpc.Reset()
	got := campaignAsync(ctx, e, "a")
	rpc.AwaitCall(t, ctx, "Txn")
	p.DropConnections() // what the proxy held is lost with them
	p.SetDelay(0)
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatalf("Campaign after its connection broke: %v", r.err)
	}
	t.Logf("transactions sent: %d", rpc.Calls("Txn"))
	waitKeys(t, ctx, testutil.Client(t), prefix, 1)
	if err := r.term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}
