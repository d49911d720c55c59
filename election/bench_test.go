package election_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// benchClient is a client of a fresh fsync-enabled server for one
// benchmark and its sub-benchmarks.
func benchClient(b *testing.B) *clientv3.Client {
	b.Helper()
	return testutil.BenchClient(b, testutil.FsyncServer(b))
}

// candidate is one session's candidacy, in either implementation.
type candidate interface {
	campaign(ctx context.Context, value string) error
	resign(ctx context.Context) error
	key() string
}

type ours struct {
	e    *election.Election
	term *election.Term
}

func (c *ours) campaign(ctx context.Context, v string) (err error) {
	c.term, err = c.e.Campaign(ctx, v)
	return err
}
func (c *ours) resign(ctx context.Context) error { return c.term.Resign(ctx) }
func (c *ours) key() string                      { return c.e.Key() }

type theirs struct {
	e *concurrency.Election
	k string // known before the first campaign, unlike e.Key()
}

func (c *theirs) campaign(ctx context.Context, v string) error { return c.e.Campaign(ctx, v) }
func (c *theirs) resign(ctx context.Context) error             { return c.e.Resign(ctx) }
func (c *theirs) key() string                                  { return c.k }

type impl struct {
	name string
	new  func(b *testing.B, cli *clientv3.Client, prefix string) (candidate, func())
}

var impls = []impl{
	{"lockstep", func(b *testing.B, cli *clientv3.Client, prefix string) (candidate, func()) {
		s, err := lockstep.NewSession(context.Background(), cli)
		if err != nil {
			b.Fatal(err)
		}
		e, err := election.New(s, prefix)
		if err != nil {
			b.Fatal(err)
		}
		return &ours{e: e}, func() { s.Close() }
	}},
	{"etcd", func(b *testing.B, cli *clientv3.Client, prefix string) (candidate, func()) {
		s, err := concurrency.NewSession(cli)
		if err != nil {
			b.Fatal(err)
		}
		k := fmt.Sprintf("%s/%x", prefix, int64(s.Lease()))
		return &theirs{e: concurrency.NewElection(s, prefix), k: k}, func() { s.Close() }
	}},
}

// BenchmarkCampaignResign is one uncontended campaign and resignation.
// ns/op is the mean; p50-ms and p99-ms its percentiles.
func BenchmarkCampaignResign(b *testing.B) {
	cli := benchClient(b)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			c, closeSession := im.new(b, cli, "/bench/cycle-"+im.name)
			defer closeSession()
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				start := time.Now()
				if err := c.campaign(ctx, "v"); err != nil {
					b.Fatal(err)
				}
				if err := c.resign(ctx); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			reportLatency(b, lat)
		})
	}
}

// BenchmarkResignToSuccessor measures the time from the start of the
// leader's Resign to the return of the waiting candidate's Campaign. Two
// candidates take turns; queued is how long the waiter has been waiting
// when the leader resigns (its key seen by the leader, plus queued).
// ns/op is the mean latency; p50-ms and p99-ms its percentiles.
func BenchmarkResignToSuccessor(b *testing.B) {
	cli := benchClient(b)
	for _, queued := range []time.Duration{5 * time.Millisecond, 200 * time.Millisecond} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("queued=%v/%s", queued, im.name), func(b *testing.B) {
				prefix := fmt.Sprintf("/bench/handoff-%s-%v", im.name, queued)
				leader, close1 := im.new(b, cli, prefix)
				defer close1()
				waiter, close2 := im.new(b, cli, prefix)
				defer close2()
				benchHandoff(b, cli, leader, waiter, queued)
			})
		}
	}
}

func benchHandoff(b *testing.B, cli *clientv3.Client, leader, waiter candidate, queued time.Duration) {
	ctx := context.Background()
	if err := leader.campaign(ctx, "v"); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	for range b.N {
		elected := make(chan time.Time, 1)
		go func() {
			if err := waiter.campaign(ctx, "v"); err != nil {
				panic(err) // a benchmark cannot fail from here
			}
			elected <- time.Now()
		}()
		for {
			resp, err := cli.Get(ctx, waiter.key())
			if err != nil {
				b.Fatal(err)
			}
			if len(resp.Kvs) == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(queued)
		start := time.Now()
		if err := leader.resign(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-elected).Sub(start))
		leader, waiter = waiter, leader
	}
	if err := leader.resign(ctx); err != nil {
		b.Fatal(err)
	}
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(testutil.Mean(lat)), "ns/op")
	testutil.ReportLatency(b, "", lat)
}
