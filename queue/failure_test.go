package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// Dequeue ends with its session, even while its request to an unreachable
// server is in flight: the session's error, not the caller's deadline.
func TestDequeueEndsWithItsSession(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cfg, proxy := testutil.ProxiedConfig(t)
	s := testutil.Session(t, testutil.ClientWith(t, cfg), lockstep.WithTTL(2*time.Second))
	q := newQueue(t, s, testutil.Prefix(t))
	proxy.Blackhole()
	defer proxy.Pass()
	dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	_, err := q.Dequeue(dctx)
	if !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("Dequeue with the server unreachable: got %v, want ErrSessionLost", err)
	}
}

// A consumer cut off from etcd just as it starts to watch the empty queue
// (alone, it is first in line: it watches claims and items) still learns
// of its session's loss: clientv3's Watch does not return until the server
// answers, so the watch must end with the session.
func TestDequeueFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s := testutil.Session(t, testutil.CutAtFirstWatch(t), lockstep.WithTTL(2*time.Second))
	w := dequeueAsync(ctx, newQueue(t, s, testutil.Prefix(t)))
	if r := await(t, ctx, w); !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("Dequeue: got (%v, %v), want error %v", r.it, r.err, lockstep.ErrSessionLost)
	}
}

// A consumer that gives up waiting while its client is cut off cannot
// delete its place in the waiting line, and its session lives on. Once the
// network is back the place must go, or the consumers behind it sleep
// through new items.
func TestCancelledWaiterLeavesNoPlaceInLine(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	cfg, proxy := testutil.ProxiedConfig(t)
	cut := newQueue(t, testutil.Session(t, testutil.ClientWith(t, cfg), lockstep.WithTTL(30*time.Second)), prefix)
	queue.AsIfAlone(cut)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := dequeueAsync(wctx, cut)
	waitWaiters(t, ctx, cli, prefix, 1)
	proxy.Blackhole()
	cancel()
	if r := await(t, ctx, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Dequeue: got %v, want context.Canceled", r.err)
	}
	proxy.Pass()

	q := newQueue(t, testutil.Session(t, cli), prefix)
	next := dequeueAsync(ctx, q)
	time.Sleep(100 * time.Millisecond) // let it join the line, behind the old place if that is still there
	mustEnqueue(t, ctx, q, "work", 0)
	short, cancelShort := context.WithTimeout(ctx, 15*time.Second)
	defer cancelShort()
	r := await(t, short, next)
	if r.err != nil {
		t.Fatalf("Dequeue behind the cancelled waiter: %v", r.err)
	}
	mustAck(t, ctx, r.it)
}

// waitWaiters waits until at least n consumers wait in line.
func waitWaiters(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, prefix+"/waiters/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count >= int64(n) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiters: got %d, want %d", resp.Count, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A key under the items that no Enqueue wrote, with the largest stamp
// there is, is refused, not looped on.
func TestEnqueueRefusesAForeignKeyAtTheEnd(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	q := newQueue(t, testutil.Session(t, cli), prefix)
	id := mustEnqueue(t, ctx, q, "real", 0)
	bucket, _, _ := strings.Cut(id, "/")
	if _, err := cli.Put(ctx, prefix+"/items/"+bucket+"/ffffffffffffffff00000000", "forged"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := q.Enqueue(short, "next")
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Enqueue after a key with the last stamp: got %v, want a clear error", err)
	}
}
