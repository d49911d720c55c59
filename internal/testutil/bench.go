package testutil

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/embedded"
)

// FsyncServer starts an embedded etcd for one benchmark, with fsync as in
// production, so that lockstep and the package it is compared with are
// measured side by side on the same server. It is closed when the
// benchmark ends.
func FsyncServer(b *testing.B) *embedded.Server {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx)
	if err != nil {
		b.Fatalf("start embedded etcd: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// BenchClient returns a new client of srv, closed when the benchmark ends.
func BenchClient(b *testing.B, srv *embedded.Server) *clientv3.Client {
	b.Helper()
	cli, err := clientv3.New(srv.ClientConfig())
	if err != nil {
		b.Fatalf("etcd client: %v", err)
	}
	b.Cleanup(func() { cli.Close() })
	return cli
}

// ReportLatency reports the median and the 99th percentile of samples, in
// milliseconds, as <name>p50-ms and <name>p99-ms.
func ReportLatency(b *testing.B, name string, samples []time.Duration) {
	b.Helper()
	if len(samples) == 0 {
		return
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(p int) float64 {
		return float64(s[min(len(s)-1, len(s)*p/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(50), name+"p50-ms")
	b.ReportMetric(at(99), name+"p99-ms")
}

// Mean returns the mean of samples.
func Mean(samples []time.Duration) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return sum / time.Duration(len(samples))
}
