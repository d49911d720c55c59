package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// cluster starts a three-member cluster and returns it with its leader and
// one follower.
func cluster(t *testing.T, ctx context.Context) (c *embedded.Cluster, leader, follower *embedded.Member) {
	t.Helper()
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if leader, err = c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members() {
		if m != leader {
			return c, leader, m
		}
	}
	panic("a cluster of three has a follower")
}

func memberClient(t *testing.T, m *embedded.Member) *clientv3.Client {
	t.Helper()
	cli, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

func TestWaitingSurvivesMemberRestart(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c, leader, follower := cluster(t, ctx)
	prefix := testutil.Prefix(t)
	cli := memberClient(t, leader)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
	// The waiter talks only to the follower, which crashes and comes back.
	w := lockAsync(ctx, newMutex(t, testutil.Session(t, memberClient(t, follower)), prefix))
	waitQueue(t, ctx, cli, prefix, 2)
	if err := follower.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := follower.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-w:
		t.Fatalf("waiter returned while the lock was held: %v", r.err)
	default:
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, w)
	if r.err != nil {
		t.Fatalf("Lock after the member restart: %v", r.err)
	}
	r.l.Unlock(ctx)
}

func TestHolderCutOffStopsBeforeNextHolderStarts(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	_, leader, follower := cluster(t, ctx)
	prefix := testutil.Prefix(t)
	// The holder talks only to a follower, which is cut off from the
	// others: its keepalives fail and its lease expires on the majority.
	hs := testutil.Session(t, memberClient(t, follower), lockstep.WithTTL(2*time.Second))
	holder := mustLock(t, ctx, newMutex(t, hs, prefix))
	cli := memberClient(t, leader)
	w := lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
	waitQueue(t, ctx, cli, prefix, 2)

	stopped := make(chan time.Time, 1)
	go func() {
		<-holder.Done() // the session ends for sure: its member is cut off
		stopped <- time.Now()
	}()
	follower.Partition()
	defer follower.Heal()
	r := await(t, ctx, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	var at time.Time
	select {
	case at = <-stopped:
	case <-ctx.Done():
		t.Fatal("the cut-off holder's Done did not close")
	}
	if err := holder.Err(); !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("holder's Err: got %v, want ErrSessionLost", err)
	}
	if !at.Before(r.at) {
		t.Fatalf("the next holder acquired at %v, before the cut-off holder's Done closed at %v", r.at, at)
	}
	t.Logf("holder's Done closed %v before the next holder acquired", r.at.Sub(at))
	r.l.Unlock(ctx)
}

func TestWaiterCutOffFails(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	_, leader, follower := cluster(t, ctx)
	prefix := testutil.Prefix(t)
	cli := memberClient(t, leader)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
	ws := testutil.Session(t, memberClient(t, follower), lockstep.WithTTL(2*time.Second))
	w := lockAsync(ctx, newMutex(t, ws, prefix))
	waitQueue(t, ctx, cli, prefix, 2)

	follower.Partition()
	defer follower.Heal()
	r := await(t, ctx, w)
	if !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("cut-off waiter: got (%v, %v), want ErrSessionLost", r.l, r.err)
	}
	// Its key goes with its lease: the queue does not stall behind it.
	holder.Unlock(ctx)
	next, err := mutex.New(testutil.Session(t, cli), prefix)
	if err != nil {
		t.Fatal(err)
	}
	l := mustLock(t, ctx, next)
	l.Unlock(ctx)
}

// A Lock whose enqueue transaction is cut off in flight (its connection
// breaks before the answer arrives) tries again and gets the lock: an
// error that may pass does not fail the Lock.
func TestLockRetriesEnqueueOnBrokenConnection(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	cfg, p := testutil.ProxiedConfig(t)
	rpc := testutil.NewRPCCounter()
	rpc.Count(&cfg)
	s := testutil.Session(t, testutil.ClientWith(t, cfg))
	m := newMutex(t, s, testutil.Prefix(t))

	p.SetDelay(2 * time.Second) // the transaction waits in the proxy
	rpc.Reset()
	w := lockAsync(ctx, m)
	rpc.AwaitCall(t, ctx, "Txn")
	p.DropConnections() // what the proxy held is lost with them
	p.SetDelay(0)
	r := await(t, ctx, w)
	if r.err != nil {
		t.Fatalf("Lock after its connection broke: %v", r.err)
	}
	t.Logf("transactions sent: %d", rpc.Calls("Txn"))
	if err := r.l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
