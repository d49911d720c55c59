package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// BenchmarkEnqueueBatch compares a batch of 100 items, one transaction,
// with 100 single Enqueues, taking turns on one embedded etcd member with
// fsync. Each iteration does both; it reports items/s of each and their
// ratio.
func BenchmarkEnqueueBatch(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cli := testutil.BenchClient(b, testutil.FsyncServer(b))
	p, err := queue.NewProducer(cli, "/bench/batch")
	if err != nil {
		b.Fatal(err)
	}
	const n = 100
	vs := values(n)
	var single, batch time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for _, v := range vs {
			if _, err := p.Enqueue(ctx, v); err != nil {
				b.Fatal(err)
			}
		}
		single += time.Since(start)
		start = time.Now()
		if _, err := p.EnqueueBatch(ctx, vs); err != nil {
			b.Fatal(err)
		}
		batch += time.Since(start)
	}
	items := float64(n * b.N)
	b.ReportMetric(items/single.Seconds(), "single-items/s")
	b.ReportMetric(items/batch.Seconds(), "batch-items/s")
	b.ReportMetric(single.Seconds()/batch.Seconds(), "batch/single")
}
