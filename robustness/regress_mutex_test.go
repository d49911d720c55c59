package robustness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// TestMutexWatchOnLaggingMember reproduces what the mutex workload found: a
// waiter's watches start at the current revision of the member that serves
// them, which can be behind the member that served the waiter's read. The
// watch then delivers deletes the read already reflected — of earlier
// incarnations of the same key names, which etcd's lock layout
// (prefix/<lease>) reuses every time a session locks again:
//
//   - an earlier incarnation of the predecessor's key: the waiter took it
//     for the holder's unlock and returned a lock while the holder still
//     held (both could then write through IsOwner);
//   - an earlier incarnation of the waiter's own key: the waiter took it for
//     the loss of its place and waited for an end that never came, until its
//     ctx ended.
//
// The test makes the lag certain: the waiter's client sends its Txns and
// reads to one member and its watch streams to another, which is cut off
// from its peers while the earlier incarnations come and go, and healed
// once the waiter watches.
func TestMutexWatchOnLaggingMember(t *testing.T) {
	for _, tc := range []struct {
		name string
		own  bool // the stale delete is of the waiter's own key, else the holder's
	}{
		{"stale delete of the holder's earlier key", false},
		{"stale delete of the waiter's earlier key", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testutil.Context(t, time.Minute)
			c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync(), embedded.WithLogger(zap.NewNop()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			leader, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var lagging *embedded.Member
			for _, m := range c.Members() {
				if m != leader {
					lagging = m
					break
				}
			}
			const name = "/regress/mutex"

			holderCli, err := leader.Client()
			if err != nil {
				t.Fatal(err)
			}
			holder, err := mutex.New(testutil.Session(t, holderCli, lockstep.WithTTL(5*time.Second)), name)
			if err != nil {
				t.Fatal(err)
			}
			cli, created := splitClient(t, leader, lagging)
			waiter, err := mutex.New(testutil.Session(t, cli, lockstep.WithTTL(5*time.Second)), name)
			if err != nil {
				t.Fatal(err)
			}

			// Earlier incarnations, which the lagging member does not see.
			lagging.Partition()
			earlier := holder
			if tc.own {
				earlier = waiter
			}
			l, err := earlier.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			held, err := holder.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}

			type result struct {
				l   *mutex.Lock
				err error
			}
			got := make(chan result, 1)
			lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			go func() {
				l, err := waiter.Lock(lctx)
				got <- result{l, err}
			}()
			// The waiter watches its predecessor, its own key and (for
			// Done) its own key again, all on the lagging member.
			for created.Load() < 3 {
				select {
				case <-ctx.Done():
					t.Fatalf("waiter's watches not created: %d", created.Load())
				case <-time.After(10 * time.Millisecond):
				}
			}
			lagging.Heal()

			// The lagging member catches up and delivers the stale
			// delete. The holder still holds: the waiter must not return
			// a lock now.
			select {
			case r := <-got:
				t.Fatalf("Lock returned (%v) while another session held the mutex (holder's Err %v)", r.err, held.Err())
			case <-time.After(2 * time.Second):
			}
			if err := unlockRetrying(ctx, held); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.err != nil {
				t.Fatalf("Lock after the holder unlocked: %v", r.err)
			}
			if err := unlockRetrying(ctx, r.l); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// splitClient returns a client that sends unary calls (Txn, Range, lease
// calls) to one member and opens every watch stream on another. The number
// of watches the second member confirmed is counted in created.
func splitClient(t *testing.T, unary, watches *embedded.Member) (*clientv3.Client, *atomic.Int64) {
	t.Helper()
	created := &atomic.Int64{}
	conn, err := grpc.NewClient(watches.Endpoint()[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	route := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != "/etcdserverpb.Watch/Watch" {
			return streamer(ctx, desc, cc, method, opts...)
		}
		cs, err := conn.NewStream(ctx, desc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &createdCounter{ClientStream: cs, created: created}, nil
	}
	return testutil.ClientWith(t, clientv3.Config{
		Endpoints:   []string{unary.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainStreamInterceptor(route)},
	}), created
}

type createdCounter struct {
	grpc.ClientStream
	created *atomic.Int64
}

func (s *createdCounter) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if wr, ok := m.(*pb.WatchResponse); ok && err == nil && wr.Created {
		s.created.Add(1)
	}
	return err
}

// unlockRetrying unlocks through the leader changes a healed member can
// cause.
func unlockRetrying(ctx context.Context, l *mutex.Lock) error {
	for {
		err := l.Unlock(ctx)
		if err == nil || errors.Is(err, lockstep.ErrReleased) || ctx.Err() != nil {
			return err
		}
		sleep(ctx, 100*time.Millisecond)
	}
}
