package rpc_test

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A session's cleanup removes only what is under its lease. Once the
// session has ended, the lease takes care of it: Sweep sends nothing (cut
// off from etcd, trying would hold the caller past the session's loss) and
// reports the cleanup over.
func TestSweepAfterTheSessionEndedSendsNothing(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli, calls := testutil.CountingClient(t)
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	key := testutil.Prefix(t)
	if _, err := cli.Put(ctx, key, "", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWithoutRevoke(); err != nil {
		t.Fatal(err)
	}
	calls.Reset()
	done := false
	over := rpc.Sweep(ctx, cli, s, rpc.Cleanup{
		Then: []clientv3.Op{clientv3.OpDelete(key)},
		Done: func() { done = true },
	})
	if !over || !done {
		t.Errorf("Sweep = %v, Done ran: %v; want the cleanup over", over, done)
	}
	if n := calls.Calls("Txn"); n != 0 {
		t.Errorf("Sweep sent %d transactions for a session that had ended, want 0", n)
	}
}
