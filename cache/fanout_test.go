package cache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// Every cache of one client and prefix shares one etcd watch, however many
// subscribers they have: counted by etcd itself.
func TestOneWatchPerClientAndPrefix(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	testutil.Server(t)
	before := settledWatchers(t, ctx)

	const caches, subscribers = 3, 1000
	var cs []*cache.Cache
	for range caches {
		cs = append(cs, open(t, ctx, cli, prefix))
	}
	subs := make([]<-chan cache.Update, subscribers)
	for i := range subs {
		subs[i] = cs[i%caches].Subscribe(ctx)
		if u := next(t, ctx, subs[i]); u.Kind != cache.Whole {
			t.Fatalf("subscriber %d: first update %v", i, u.Kind)
		}
	}
	// Open returns once the listing is in; the watch follows at once.
	waitWatchers(t, ctx, before+1)
	if got := testutil.ServerWatchers(t) - before; got != 1 {
		t.Fatalf("etcd watchers for %d caches and %d subscribers: %d, want 1", caches, subscribers, got)
	}

	rev := put(t, ctx, cli, prefix+"k", "v")
	var wg sync.WaitGroup
	errs := make(chan string, subscribers)
	for _, sub := range subs {
		wg.Go(func() {
			select {
			case u := <-sub:
				if u.Revision() != rev || len(u.Changes) != 1 {
					errs <- "wrong update"
				}
			case <-ctx.Done():
				errs <- "no update"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}

	// Another client is another watch; closing every cache of a prefix
	// cancels its watch.
	other := open(t, ctx, testutil.Client(t), prefix)
	waitWatchers(t, ctx, before+2)
	other.Close()
	for _, c := range cs {
		c.Close()
	}
	waitWatchers(t, ctx, before)
}

// settledWatchers returns how many watchers etcd holds once the count has
// stopped moving: cancels of earlier tests' watches arrive late.
func settledWatchers(t *testing.T, ctx context.Context) int {
	t.Helper()
	n := testutil.ServerWatchers(t)
	for {
		select {
		case <-ctx.Done():
			t.Fatal("the watcher count did not settle")
		case <-time.After(200 * time.Millisecond):
		}
		m := testutil.ServerWatchers(t)
		if m == n {
			return n
		}
		n = m
	}
}

// waitWatchers waits until etcd holds n watchers: a cancel reaches the
// server a little after Close returns.
func waitWatchers(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for testutil.ServerWatchers(t) != n {
		select {
		case <-ctx.Done():
			t.Fatalf("etcd watchers: %d, want %d", testutil.ServerWatchers(t), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
