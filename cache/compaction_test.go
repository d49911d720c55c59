package cache_test

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

var loadDuration = flag.Duration("cache.load", 3*time.Second, "how long TestCompactionUnderLoad writes and compacts")

// TestCompactionUnderLoad writes to a prefix every millisecond while the
// server compacts every 100 ms. One cache follows it directly, another
// through a link that breaks every second, so that its watch resumes
// behind the compaction and must list again. At the end every subscriber,
// fast or slow, holds exactly what a fresh read of the prefix holds.
//
//	go test ./cache -run CompactionUnderLoad -cache.load=30s -v
func TestCompactionUnderLoad(t *testing.T) {
	ctx := testutil.Context(t, *loadDuration+time.Minute)
	cli := testutil.Client(t)
	cfg, proxy := testutil.ProxiedConfig(t)
	broken := testutil.ClientWith(t, cfg)
	prefix := testutil.Prefix(t) + "/"

	var followers []*follower
	var caches []*cache.Cache
	for _, c := range []struct {
		name string
		cli  *clientv3.Client
	}{{"direct", cli}, {"broken link", broken}} {
		ch := open(t, ctx, c.cli, prefix, cache.WithBuffer(8))
		caches = append(caches, ch)
		for _, speed := range []string{"fast", "slow"} {
			followers = append(followers, &follower{name: c.name + ", " + speed, sub: ch.Subscribe(ctx)})
		}
	}
	var wg sync.WaitGroup
	for i, f := range followers {
		slow := i%2 == 1
		wg.Go(func() {
			for u := range f.sub {
				f.apply(t, u)
				if slow {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}

	wctx, stop := context.WithTimeout(ctx, *loadDuration)
	defer stop()
	var writes int
	var load sync.WaitGroup
	load.Go(func() { writes = writeEveryMillisecond(wctx, t, cli, prefix) })
	load.Go(func() { compactEvery(wctx, cli, 100*time.Millisecond) })
	load.Go(func() { breakEverySecond(wctx, proxy) })
	load.Wait()

	want, rev := etcdState(t, ctx, cli, prefix)
	for _, c := range caches {
		if err := c.WaitRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	// Let every subscriber take what is queued for it.
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range followers {
		for time.Now().Before(deadline) && f.mirrorRev() < rev {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop()
	for _, c := range caches {
		c.Close()
	}
	wg.Wait()
	for _, f := range followers {
		if f.m.rev < rev || f.m.render() != want {
			t.Errorf("%s: at revision %d, %d keys; etcd at %d has %d keys", f.name, f.m.rev, len(f.m.kv), rev, strings.Count(want, "\n"))
		}
		t.Logf("%s: %d whole states, %d resyncs", f.name, f.wholes, f.resyncs)
	}
	t.Logf("%d writes in %v; cache resyncs: direct %d, broken link %d", writes, *loadDuration, caches[0].Resyncs(), caches[1].Resyncs())
	if caches[1].Resyncs() == 0 && *loadDuration >= 3*time.Second {
		t.Error("the cache behind the broken link never listed again: the test did not test a resync")
	}
}

// follower is one subscriber of TestCompactionUnderLoad and what it has
// applied.
type follower struct {
	name string
	sub  <-chan cache.Update

	mu      sync.Mutex
	m       mirror
	wholes  int
	resyncs int
}

func (f *follower) apply(t *testing.T, u cache.Update) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.m.take(u); err != nil {
		t.Errorf("%s: %v", f.name, err)
	}
	if u.Kind == cache.Whole {
		f.wholes++
	}
	if u.Resync {
		f.resyncs++
	}
}

func (f *follower) mirrorRev() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.rev
}

// writeEveryMillisecond puts, deletes and re-creates keys under prefix
// until ctx ends and returns how many writes it made.
func writeEveryMillisecond(ctx context.Context, t *testing.T, cli *clientv3.Client, prefix string) int {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
		k := fmt.Sprintf("%sk%03d", prefix, n%200)
		var err error
		if n%7 == 3 {
			_, err = cli.Delete(ctx, k)
		} else {
			_, err = cli.Put(ctx, k, fmt.Sprint(n))
		}
		if err != nil && ctx.Err() == nil {
			t.Errorf("write: %v", err)
			return n
		}
		n++
	}
}

// compactEvery compacts the server's history up to its current revision
// every period until ctx ends.
func compactEvery(ctx context.Context, cli *clientv3.Client, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if resp, err := cli.Get(ctx, "compact-probe"); err == nil {
			cli.Compact(ctx, resp.Header.Revision)
		}
	}
}

// breakEverySecond drops the proxy's connections for 200 ms every second.
func breakEverySecond(ctx context.Context, p *faultproxy.Proxy) {
	for {
		select {
		case <-ctx.Done():
			p.Pass()
			return
		case <-time.After(800 * time.Millisecond):
		}
		p.Refuse()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		p.Pass()
	}
}
