package leaderjob_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// Five runners; the leader is killed again and again: its Run cancelled (it
// resigns), its client cut off (its session expires) or its lease revoked
// from outside (it hears of it as its successor does; the successor
// settles). At no instant do two jobs run with a live ctx, and every
// term's token is above the previous one. (With WithSettle(0) the revokes
// make jobs overlap by microseconds: seen in 2 runs of 2.)
func TestRandomLeaderKills(t *testing.T) {
	kills := 24
	if testing.Short() {
		kills = 8
	}
	const n = 5
	ctx := testutil.Context(t, 5*time.Minute)
	prefix := testutil.Prefix(t)
	target := strings.TrimPrefix(testutil.Server(t).Endpoints()[0], "http://")
	rec := newRecorder()

	proxies := make([]*faultproxy.Proxy, n)
	runners := make([]*leaderjob.Runner, n)
	runs := make([]*running, n)
	for i := range n {
		p, err := faultproxy.New("127.0.0.1:0", target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[i] = p
		cfg := testutil.Server(t).ClientConfig()
		cfg.Endpoints = []string{"http://" + p.Addr()}
		name := string(rune('a' + i))
		runners[i] = newRunner(t, testutil.ClientWith(t, cfg), prefix, rec.job(name),
			leaderjob.WithIdentity(name), leaderjob.WithTTL(2*time.Second),
			leaderjob.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
		runs[i] = start(t, runners[i])
	}

	cutOff := -1 // the runner whose client is blackholed, until the next leader runs
	var graceful, crashes, revokes int
	for range kills {
		r := rec.next(t, ctx)
		if cutOff >= 0 {
			proxies[cutOff].Pass()
			cutOff = -1
		}
		i := int(r.runner[0] - 'a')
		time.Sleep(rand.N(20 * time.Millisecond))
		switch rand.N(3) {
		case 0:
			graceful++
			runs[i].stop(t)
			runs[i] = start(t, runners[i])
		case 1:
			crashes++
			proxies[i].Blackhole()
			cutOff = i
		default:
			revokes++
			if _, err := testutil.Client(t).Revoke(ctx, r.lease); err != nil {
				t.Fatalf("revoke the leader's lease: %v", err)
			}
		}
	}
	rec.next(t, ctx)
	for i := range n {
		proxies[i].Pass()
		runs[i].stop(t)
	}
	rec.check(t)
	t.Logf("%d terms, %d resignations, %d cut-off leaders, %d revoked leases", len(rec.runs), graceful, crashes, revokes)
	waitNoKeys(t, ctx, prefix)
}

func waitNoKeys(t *testing.T, ctx context.Context, prefix string) {
	t.Helper()
	resp, err := testutil.Client(t).Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d candidate keys left after every runner stopped", resp.Count)
	}
}
