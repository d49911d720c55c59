package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/embedded"
)

// BenchmarkStart measures Start to a member that serves, and its Close,
// with the defaults (fsync on) and with WithoutFsync. Read ns/op as the
// cost of one start and close; start-ms/op is the start alone.
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []embedded.Option
	}{
		{"fsync", nil},
		{"nofsync", []embedded.Option{embedded.WithoutFsync()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			var started time.Duration
			for b.Loop() {
				t0 := time.Now()
				srv, err := embedded.Start(ctx, bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				started += time.Since(t0)
				srv.Close()
			}
			b.ReportMetric(float64(started.Microseconds())/1e3/float64(b.N), "start-ms/op")
		})
	}
}

// BenchmarkStartCluster measures StartCluster of three members (defaults,
// fsync on) until it has a leader, and its Close.
func BenchmarkStartCluster(b *testing.B) {
	ctx := context.Background()
	var started time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := embedded.StartCluster(ctx, 3)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.WaitLeader(ctx); err != nil {
			b.Fatal(err)
		}
		started += time.Since(t0)
		c.Close()
	}
	b.ReportMetric(float64(started.Microseconds())/1e3/float64(b.N), "start-ms/op")
}
