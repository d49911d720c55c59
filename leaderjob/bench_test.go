package leaderjob_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// BenchmarkHandover measures a graceful handover between two runners on
// one embedded server with fsync: from cancelling the leader's Run to the
// start of the other runner's job. ns/op is the mean; p50-ms and p99-ms
// its percentiles.
func BenchmarkHandover(b *testing.B) {
	cli := testutil.BenchClient(b, testutil.FsyncServer(b))
	const (
		prefix = "/bench/handover"
		// How long the standby has been queued when the leader stops; a
		// standby that queued a moment before its predecessor resigned is
		// the less favourable case (see the election benchmark).
		queuedFor = 5 * time.Millisecond
	)
	started := make(chan time.Time, 1)
	job := func(ctx context.Context, _ *election.Term) error {
		started <- time.Now()
		<-ctx.Done()
		return nil
	}
	type replica struct {
		cancel context.CancelFunc
		done   chan error
	}
	launch := func(name string) replica {
		r, err := leaderjob.New(cli, prefix, job, leaderjob.WithIdentity(name))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		rep := replica{cancel, make(chan error, 1)}
		go func() { rep.done <- r.Run(ctx) }()
		return rep
	}
	queued := func() {
		for {
			resp, err := cli.Get(context.Background(), prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				b.Fatal(err)
			}
			if resp.Count == 2 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}

	leader := launch("r0")
	<-started
	lat := make([]time.Duration, 0, b.N)
	for i := range b.N {
		standby := launch(fmt.Sprintf("r%d", i+1))
		queued()
		time.Sleep(queuedFor)
		t0 := time.Now()
		leader.cancel()
		lat = append(lat, (<-started).Sub(t0))
		<-leader.done
		leader = standby
	}
	leader.cancel()
	<-leader.done

	b.ReportMetric(float64(testutil.Mean(lat)), "ns/op")
	testutil.ReportLatency(b, "", lat)
}
