package cache_test

import (
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
	before := testutil.SettledWatchers(t, ctx)

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
	testutil.AwaitWatchers(t, ctx, before+1)
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
	testutil.AwaitWatchers(t, ctx, before+2)
	other.Close()
	for _, c := range cs {
		c.Close()
	}
	testutil.AwaitWatchers(t, ctx, before)
}
