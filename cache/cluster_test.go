package cache_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A cache whose member is partitioned from its peers, or stopped and
// restarted, keeps its subscribers and ends up where etcd is, with no gap:
// every update's snapshot is what its changes lead to.
func TestCacheThroughMemberFaults(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync(), embedded.WithLogger(zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	m0 := c.Members()[0]
	// The writer talks to the other two members, which keep a quorum.
	writer, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{c.Members()[1].Endpoint(), c.Members()[2].Endpoint()},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := clientv3.New(clientv3.Config{Endpoints: []string{m0.Endpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	const prefix = "/faults/"
	put(t, ctx, writer, prefix+"a", "0")
	ch := open(t, ctx, reader, prefix)
	sub := ch.Subscribe(ctx)
	var m mirror
	m.apply(t, next(t, ctx, sub))

	catchUp := func(what string) {
		t.Helper()
		want, rev := etcdState(t, ctx, writer, prefix)
		for m.rev < rev || m.render() != want {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			select {
			case u, ok := <-sub:
				cancel()
				if !ok {
					t.Fatalf("%s: the subscription closed", what)
				}
				m.apply(t, u)
				if m.rev >= rev && m.render() != want {
					t.Fatalf("%s: at %d:\n%s\nwant:\n%s", what, m.rev, m.render(), want)
				}
			case <-wctx.Done():
				cancel()
				t.Fatalf("%s: stuck at %d (want %d):\n%s\nwant:\n%s", what, m.rev, rev, m.render(), want)
			}
		}
	}

	// A partitioned member has no leader: the watch, which requires one,
	// ends, and the cache lists again once the member is back. (If it led,
	// the others elect a new leader first: writes retry through that.)
	m0.Partition()
	for i := range 5 {
		putThrough(t, ctx, writer, prefix+"a", string(rune('1'+i)))
	}
	putThrough(t, ctx, writer, prefix+"b", "1")
	m0.Heal()
	catchUp("after a partition")

	// A stopped member: the client reconnects when it is back.
	if err := m0.Stop(); err != nil {
		t.Fatal(err)
	}
	putThrough(t, ctx, writer, prefix+"c", "1")
	if err := rpc.Do(ctx, writer, nil, func(ctx context.Context) error {
		_, err := writer.Delete(ctx, prefix+"b")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := m0.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	catchUp("after a restart")
	if ch.Err() != nil {
		t.Fatalf("Err: %v", ch.Err())
	}
}

// putThrough writes, retrying errors that may pass (an election).
func putThrough(t *testing.T, ctx context.Context, cli *clientv3.Client, k, v string) {
	t.Helper()
	if err := rpc.Do(ctx, cli, nil, func(ctx context.Context) error {
		_, err := cli.Put(ctx, k, v)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
