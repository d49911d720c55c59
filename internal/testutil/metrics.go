package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// ServerWatchers returns how many watchers the etcd servers of this
// process hold, as etcd counts them (its etcd_debugging_mvcc_watcher_total
// gauge): the server's side of "how many watches did we open".
func ServerWatchers(t testing.TB) int {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather etcd's metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_watcher_total" {
			n := 0.0
			for _, m := range mf.GetMetric() {
				n += m.GetGauge().GetValue()
			}
			return int(n)
		}
	}
	t.Fatal("etcd_debugging_mvcc_watcher_total not found: is an embedded etcd running in this process?")
	return 0
}
