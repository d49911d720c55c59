package barrier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// participants makes n participants of the double barrier prefix, each with
// its own session on cli.
func participants(t *testing.T, cli *clientv3.Client, prefix string, n, count int, opts ...lockstep.SessionOption) []*barrier.DoubleBarrier {
	t.Helper()
	ds := make([]*barrier.DoubleBarrier, n)
	for i := range ds {
		d, err := barrier.NewDouble(testutil.Session(t, cli, opts...), prefix, count)
		if err != nil {
			t.Fatal(err)
		}
		ds[i] = d
	}
	return ds
}

// all runs f for every participant at once and returns their errors.
func all(ds []*barrier.DoubleBarrier, f func(d *barrier.DoubleBarrier) error) []error {
	errs := make([]error, len(ds))
	done := make(chan struct{})
	for i, d := range ds {
		go func() {
			errs[i] = f(d)
			done <- struct{}{}
		}()
	}
	for range ds {
		<-done
	}
	return errs
}

func noErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: participant %d: %v", what, i, err)
		}
	}
}

// keysUnder returns the keys under prefix.
func keysUnder(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

func TestDoubleBarrierRounds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	ds := participants(t, cli, prefix, 4, 4)
	var last int64
	for round := range 5 {
		noErrors(t, "Enter", all(ds, func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) }))
		r := ds[0].Round()
		for i, d := range ds {
			if d.Round() != r {
				t.Fatalf("round %d: participant %d in round %d, participant 0 in %d", round, i, d.Round(), r)
			}
		}
		if r <= last {
			t.Fatalf("round %d: identity %d, want more than the previous %d", round, r, last)
		}
		last = r
		noErrors(t, "Leave", all(ds, func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) }))
	}
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the last round: %v", ks)
	}
	_ = errors.Is
}
