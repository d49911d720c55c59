package semaphore_test

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func newSem(t *testing.T, s *lockstep.Session, prefix string, limit int) *semaphore.Semaphore {
	t.Helper()
	sem, err := semaphore.New(s, prefix, limit)
	if err != nil {
		t.Fatalf("New(%q, %d): %v", prefix, limit, err)
	}
	return sem
}

func acquire(t *testing.T, ctx context.Context, sem *semaphore.Semaphore) *semaphore.Permit {
	t.Helper()
	p, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return p
}

func release(t *testing.T, ctx context.Context, p *semaphore.Permit) {
	t.Helper()
	if err := p.Release(ctx); err != nil {
		t.Fatalf("Release %s: %v", p.Key(), err)
	}
}

// keysUnder returns the semaphore's keys, oldest first.
func keysUnder(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

// waitKeys blocks until at least n keys exist under the semaphore's prefix,
// woken by a watch rather than polling. Tests use it to queue waiters in a
// known order.
func waitKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("waiting for %d keys under %s: %v", n, prefix, err)
		}
		if resp.Count >= int64(n) {
			return
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := cli.Watch(wctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-wch:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("waiting for %d keys under %s: %v", n, prefix, ctx.Err())
		}
	}
}

// grant is what a waiter goroutine reports.
type grant struct {
	i   int
	p   *semaphore.Permit
	err error
}

// startWaiter runs Acquire in a goroutine and reports on out; the caller
// must receive from out.
func startWaiter(ctx context.Context, sem *semaphore.Semaphore, i int, out chan<- grant) {
	go func() {
		p, err := sem.Acquire(ctx)
		out <- grant{i, p, err}
	}()
}

func recvGrant(t *testing.T, ctx context.Context, ch <-chan grant) grant {
	t.Helper()
	select {
	case g := <-ch:
		if g.err != nil {
			t.Fatalf("waiter %d: Acquire: %v", g.i, g.err)
		}
		return g
	case <-ctx.Done():
		t.Fatalf("no waiter was granted a permit: %v", ctx.Err())
		return grant{}
	}
}
