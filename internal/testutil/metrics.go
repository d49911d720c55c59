package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ServerWatchers returns how many watchers the etcd servers of this
// process hold, as etcd counts them (its etcd_debugging_mvcc_watcher_total
// gauge): the server's side of "how many watches did we open".
func ServerWatchers(t testing.TB) int {
	t.Helper()
	return int(serverMetric(t, "etcd_debugging_mvcc_watcher_total"))
}

// LeasesGranted returns how many leases the etcd servers of this process
// have granted since they started (etcd_debugging_lease_granted_total):
// what a separate process, such as the command, asked for.
func LeasesGranted(t testing.TB) int {
	t.Helper()
	return int(serverMetric(t, "etcd_debugging_lease_granted_total"))
}

// serverMetric sums the gauge or counter name over the etcd servers of
// this process.
func serverMetric(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather etcd's metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			n := 0.0
			for _, m := range mf.GetMetric() {
				n += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			return n
		}
	}
	t.Fatalf("%s not found: is an embedded etcd running in this process?", name)
	return 0
}

// SettledWatchers returns ServerWatchers once it has stopped moving (the
// same count 200 ms apart): watches closed by earlier tests reach the
// server a little after their Close returned.
func SettledWatchers(t testing.TB, ctx context.Context) int {
	t.Helper()
	n := ServerWatchers(t)
	for {
		select {
		case <-ctx.Done():
			t.Fatal("the watcher count did not settle")
		case <-time.After(200 * time.Millisecond):
		}
		m := ServerWatchers(t)
		if m == n {
			return n
		}
		n = m
	}
}

// AwaitWatchers waits until etcd holds n watchers, failing t if ctx ends
// first.
func AwaitWatchers(t testing.TB, ctx context.Context, n int) {
	t.Helper()
	for ServerWatchers(t) != n {
		select {
		case <-ctx.Done():
			t.Fatalf("etcd watchers: %d, want %d", ServerWatchers(t), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
