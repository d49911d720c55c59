package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// Producers and consumers keep going while the leader of a three-member
// cluster crashes and comes back: every value is delivered, no item is
// acked twice, and the queue ends empty with nothing left behind. Calls
// that fail on the way are retried by the caller as an application would:
// Enqueue may then add a value twice, and an Ack whose reply was lost may
// have taken effect, in which case its retry reports ErrClaimLost.
func TestSurvivesLeaderCrash(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *clientv3.Client {
		cli, err := c.Client()
		if err != nil {
			t.Fatal(err)
		}
		return cli
	}
	prefix := testutil.Prefix(t)
	const producers, perProducer, consumers = 2, 300, 4
	var (
		mu     sync.Mutex
		ackIDs = map[string]int{}
		values = map[string]int{} // deliveries per value
		errs   []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var acked atomic.Int64
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		cli := newClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := lockstep.NewSession(ctx, cli)
			if err != nil {
				fail(err)
				return
			}
			defer s.Close()
			q, err := queue.New(s, prefix)
			if err != nil {
				fail(err)
				return
			}
			for i := 0; i < perProducer; i++ {
				for attempt := 0; ; attempt++ {
					if _, err := q.Enqueue(ctx, fmt.Sprintf("%d/%d", p, i)); err == nil {
						break
					} else if ctx.Err() != nil {
						fail(err)
						return
					}
					retry.Sleep(ctx, attempt)
				}
			}
		}()
	}
	for i := 0; i < consumers; i++ {
		cli := newClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cctx.Err() == nil {
				consumeThroughFaults(cctx, cli, prefix, &acked, func(id, value string, ok bool) {
					mu.Lock()
					if ok {
						ackIDs[id]++
					}
					values[value]++
					mu.Unlock()
				}, fail)
			}
		}()
	}
	waitAcked := func(n int64) {
		for acked.Load() < n {
			select {
			case <-ctx.Done():
				t.Fatalf("only %d items acked, waiting for %d", acked.Load(), n)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitAcked(producers * perProducer / 4)
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	waitAcked(producers * perProducer / 2)
	if err := leader.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	cli := newClient()
	for {
		mu.Lock()
		n := len(values)
		mu.Unlock()
		resp, err := cli.Get(ctx, prefix+"/items/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && n == producers*perProducer && resp.Count == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d values delivered; left: %v", n, producers*perProducer, keysUnder(t, cli, prefix+"/"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	for id, n := range ackIDs {
		if n != 1 {
			t.Errorf("item %s acked %d times", id, n)
		}
	}
	redelivered := 0
	for _, n := range values {
		redelivered += n - 1
	}
	t.Logf("%d acks succeeded, %d deliveries of values seen before", len(ackIDs), redelivered)
	for _, dir := range []string{"/items/", "/claims/", "/waiters/"} {
		noneUnder(t, cli, prefix+dir)
	}
}

// consumeThroughFaults runs one consumer session, retrying what failed
// transiently, until ctx ends or the session is lost.
func consumeThroughFaults(ctx context.Context, cli *clientv3.Client, prefix string, acked *atomic.Int64,
	record func(id, value string, acked bool), fail func(error)) {
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		if ctx.Err() == nil {
			retry.Sleep(ctx, 3)
		}
		return
	}
	defer s.Close()
	q, err := queue.New(s, prefix)
	if err != nil {
		fail(err)
		return
	}
	for {
		it, err := q.Dequeue(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, lockstep.ErrSessionLost) {
				fail(fmt.Errorf("Dequeue: %w", err))
			}
			return
		}
		for attempt := 0; ; attempt++ {
			err := it.Ack(context.WithoutCancel(ctx))
			if err == nil {
				record(it.ID(), it.Value(), true)
				acked.Add(1)
				break
			}
			if errors.Is(err, queue.ErrClaimLost) {
				// Delivered again, or acked by an earlier try whose reply
				// was lost.
				record(it.ID(), it.Value(), false)
				break
			}
			retry.Sleep(context.WithoutCancel(ctx), attempt)
		}
	}
}
