package leaderjob_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// failoverTTL is the session TTL of the failover tests: the crash failover
// time is about this plus the server's lease expiry check.
const failoverTTL = 3 * time.Second

// cluster starts a 3-member cluster closed after everything the test
// registers later, and returns it with its raft leader and the two
// followers.
func cluster(t *testing.T, ctx context.Context) (c *embedded.Cluster, leader *embedded.Member, followers []*embedded.Member) {
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
			followers = append(followers, m)
		}
	}
	return c, leader, followers
}

func memberClient(t *testing.T, m *embedded.Member) *clientv3.Client {
	t.Helper()
	cli, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// failure is one way for the leading runner to fail. arrange returns the
// client the leading runner uses; fault makes it fail (it gets the
// leader's run); heal undoes what can be undone.
type failure struct {
	name    string
	arrange func(t *testing.T, ctx context.Context, follower *embedded.Member) (cli *clientv3.Client, fault func(*run), heal func())
}

var failures = []failure{
	{
		name: "session killed",
		arrange: func(t *testing.T, ctx context.Context, m *embedded.Member) (*clientv3.Client, func(*run), func()) {
			cli := memberClient(t, m)
			return cli, func(r *run) {
				if _, err := cli.Revoke(ctx, r.lease); err != nil {
					t.Errorf("revoke: %v", err)
				}
			}, func() {}
		},
	},
	{
		name: "client blackholed",
		arrange: func(t *testing.T, ctx context.Context, m *embedded.Member) (*clientv3.Client, func(*run), func()) {
			p, err := faultproxy.New("127.0.0.1:0", strings.TrimPrefix(m.Endpoint(), "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			cfg := clientv3.Config{Endpoints: []string{"http://" + p.Addr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
			cli := testutil.ClientWith(t, cfg)
			return cli, func(*run) { p.Blackhole() }, p.Pass
		},
	},
	{
		name: "member stopped",
		arrange: func(t *testing.T, ctx context.Context, m *embedded.Member) (*clientv3.Client, func(*run), func()) {
			return memberClient(t, m), func(*run) {
					if err := m.Stop(); err != nil {
						t.Errorf("stop %s: %v", m.Name(), err)
					}
				}, func() {
					if err := m.Restart(ctx); err != nil {
						t.Errorf("restart %s: %v", m.Name(), err)
					}
				}
		},
	},
}

// The leading runner fails; the standby takes over and runs the job, and
// the old job saw its ctx end before the new one started.
func TestFailover(t *testing.T) {
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			ctx := testutil.Context(t, 90*time.Second)
			_, leader, followers := cluster(t, ctx)
			// The failing runner talks to a follower: stopping the raft
			// leader would also restart every lease's TTL on the new one.
			oldCli, fault, heal := f.arrange(t, ctx, followers[0])
			otherCli := memberClient(t, leader)
			prefix := "/test/failover"
			rec := newRecorder()
			opts := []leaderjob.Option{leaderjob.WithTTL(failoverTTL)}
			start(t, newRunner(t, oldCli, prefix, rec.job("old"), opts...))
			old := rec.next(t, ctx)
			start(t, newRunner(t, otherCli, prefix, rec.job("standby"), opts...))
			waitKeys(t, ctx, otherCli, prefix, 2)

			at := time.Now()
			fault(old)
			next := rec.next(t, ctx)
			stopped := rec.ended(t, ctx, old)
			heal()
			if next.runner != "standby" || next.token <= old.token {
				t.Fatalf("after the failure %s ran with token %d, want standby above %d", next.runner, next.token, old.token)
			}
			t.Logf("%s (ttl %v): old job's ctx ended after %v, new job started after %v",
				f.name, failoverTTL, stopped.Sub(at), next.start.Sub(at))
			// The old job's ctx ended before the new job started. For a
			// lease revoked from outside both runners learn of it from the
			// same revision; the standby's settle delay orders them.
			rec.check(t)
			// And the old term's fence fails from the revision that ended
			// it, so its writes are refused.
			resp, err := otherCli.Txn(ctx).If(old.term.IsOwner()).Then(clientv3.OpPut(prefix+"-data", "old")).Commit()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded {
				t.Fatal("a write fenced by the old term succeeded after the failure")
			}
		})
	}
}
