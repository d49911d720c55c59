package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func startCluster(t *testing.T, ctx context.Context, n int) *embedded.Cluster {
	t.Helper()
	c, err := embedded.StartCluster(ctx, n, embedded.WithoutFsync())
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func memberClient(t *testing.T, m *embedded.Member) *clientv3.Client {
	t.Helper()
	cli, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// putEventually retries a write until it commits or ctx ends: right after
// a fault the cluster may need an election first.
func putEventually(t *testing.T, ctx context.Context, cli *clientv3.Client, key, value string) {
	t.Helper()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Put(pctx, key, value)
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("put %s never committed: %v", key, err)
		}
	}
}

func TestClusterPartitionCutsMemberFromPeers(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c := startCluster(t, ctx, 3)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cut := memberClient(t, leader)
	putEventually(t, ctx, cut, "k", "before")

	leader.Partition()
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = cut.Put(short, "k", "during")
	cancel()
	if err == nil {
		t.Fatal("a partitioned member committed a write")
	}
	short, cancel = context.WithTimeout(ctx, 3*time.Second)
	_, err = cut.Get(short, "k")
	cancel()
	if err == nil {
		t.Fatal("a partitioned member served a linearizable read")
	}
	stale, err := cut.Get(ctx, "k", clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("serializable read from the partitioned member: %v", err)
	}
	if len(stale.Kvs) != 1 || string(stale.Kvs[0].Value) != "before" {
		t.Fatalf("serializable read from the partitioned member: %v, want before", stale.Kvs)
	}
	newLeader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatal("the partitioned member is still the agreed leader")
	}
	putEventually(t, ctx, memberClient(t, newLeader), "k", "majority")

	leader.Heal()
	putEventually(t, ctx, cut, "k", "healed")
	resp, err := cut.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != "healed" {
		t.Fatalf("after heal: got %q, want %q", got, "healed")
	}
}

func TestClusterStopAndRestartKeepData(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c := startCluster(t, ctx, 3)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	putEventually(t, ctx, cli, "k", "1")

	for _, m := range c.Members() {
		t.Run(m.Name(), func(t *testing.T) {
			endpoint := m.Endpoint()
			if err := m.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := m.Stop(); !errors.Is(err, embedded.ErrStopped) {
				t.Fatalf("second Stop: got %v, want ErrStopped", err)
			}
			if m.Running() || m.IsLeader() {
				t.Fatal("a stopped member reports itself running or leading")
			}
			value := "after-stop-" + m.Name()
			putEventually(t, ctx, cli, "k", value) // two of three still commit
			if err := m.Restart(ctx); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if m.Endpoint() != endpoint {
				t.Fatalf("endpoint changed across restart: %s → %s", endpoint, m.Endpoint())
			}
			resp, err := memberClient(t, m).Get(ctx, "k") // linearizable: caught up
			if err != nil {
				t.Fatal(err)
			}
			if got := string(resp.Kvs[0].Value); got != value {
				t.Fatalf("restarted member: got %q, want %q", got, value)
			}
		})
	}
}

// Stopping the leader leaves two members that elect a new one, and the
// cluster's client writes through it.
func TestClusterElectsNewLeaderWhenLeaderStops(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c := startCluster(t, ctx, 3)
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	putEventually(t, ctx, cli, "k", "before")
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	next, err := c.WaitLeader(ctx) // only running members count
	if err != nil {
		t.Fatalf("no new leader after the leader stopped: %v", err)
	}
	putEventually(t, ctx, cli, "k", "after")
	resp, err := memberClient(t, next).Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "after" {
		t.Fatalf("read through the new leader: %v, want after", resp.Kvs)
	}
}

func TestStartClusterErrors(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	tests := []struct {
		n    int
		opts []embedded.Option
		want error
	}{
		{0, nil, embedded.ErrInvalidSize},
		{-1, nil, embedded.ErrInvalidSize},
		{3, []embedded.Option{embedded.WithDir(t.TempDir())}, embedded.ErrInvalidOption},
		{3, []embedded.Option{embedded.WithClientURL("http://127.0.0.1:1")}, embedded.ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n, len(tt.opts)), func(t *testing.T) {
			c, err := embedded.StartCluster(ctx, tt.n, tt.opts...)
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("StartCluster: got %v, want %v", err, tt.want)
			}
		})
	}
}
