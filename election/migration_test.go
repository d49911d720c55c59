package election_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// sightings are the leader values an observer reported.
type sightings struct {
	mu      sync.Mutex
	seen    map[string]bool
	changed chan struct{} // closed and replaced at each sighting
}

func newSightings() *sightings {
	return &sightings{seen: map[string]bool{}, changed: make(chan struct{})}
}

func (s *sightings) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[v] = true
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait returns when v has been reported, or with ctx's error.
func (s *sightings) wait(ctx context.Context, v string) error {
	for {
		s.mu.Lock()
		ok, changed := s.seen[v], s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// leaderCheck is what every leader does while it leads: the count of
// leaders in this process must be 1; etcd's Leader and ours must both name
// it; its token must be above the previous leader's; a counter in etcd is
// read and written back plus one, guarded by the counter's revision as
// read and by the leader's IsOwner; and it keeps leading until both
// observers, etcd's Observe and ours, have reported it.
type leaderCheck struct {
	cli       *clientv3.Client
	counter   string
	theirs    *concurrency.Election // Leader only
	ours      *election.Observer
	theirSeen *sightings
	ourSeen   *sightings
	leaders   atomic.Int32

	mu     sync.Mutex
	tokens []int64 // every term, in order
}

func (c *leaderCheck) lead(ctx context.Context, key, value string, token int64, isOwner clientv3.Cmp) error {
	if n := c.leaders.Add(1); n != 1 {
		c.leaders.Add(-1)
		return fmt.Errorf("%s: %d leaders at once", value, n)
	}
	defer c.leaders.Add(-1)

	resp, err := c.theirs.Leader(ctx)
	if err != nil {
		return fmt.Errorf("%s: their Leader: %w", value, err)
	}
	if kv := resp.Kvs[0]; string(kv.Key) != key || string(kv.Value) != value || kv.CreateRevision != token {
		return fmt.Errorf("%s: their Leader is %s=%s at %d, want %s at %d", value, kv.Key, kv.Value, kv.CreateRevision, key, token)
	}
	ld, err := c.ours.Leader(ctx)
	if err != nil {
		return fmt.Errorf("%s: our Leader: %w", value, err)
	}
	if ld.Key != key || ld.Value != value || ld.Token != token {
		return fmt.Errorf("%s: our Leader is %+v, want %s at %d", value, ld, key, token)
	}

	c.mu.Lock()
	last := int64(0)
	if len(c.tokens) > 0 {
		last = c.tokens[len(c.tokens)-1]
	}
	c.tokens = append(c.tokens, token)
	c.mu.Unlock()
	if token <= last {
		return fmt.Errorf("%s: token %d is not above the previous leader's %d", value, token, last)
	}

	got, err := c.cli.Get(ctx, c.counter)
	if err != nil {
		return err
	}
	var n int
	var rev int64
	if len(got.Kvs) == 1 {
		if _, err := fmt.Sscan(string(got.Kvs[0].Value), &n); err != nil {
			return err
		}
		rev = got.Kvs[0].ModRevision
	}
	txn, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(c.counter), "=", rev), isOwner).
		Then(clientv3.OpPut(c.counter, fmt.Sprint(n+1))).
		Commit()
	if err != nil {
		return err
	}
	if !txn.Succeeded {
		return fmt.Errorf("%s: counter written by someone else between its read and its write, or the term was lost", value)
	}

	if err := c.theirSeen.wait(ctx, value); err != nil {
		return fmt.Errorf("%s: etcd's Observe never reported it: %w", value, err)
	}
	if err := c.ourSeen.wait(ctx, value); err != nil {
		return fmt.Errorf("%s: our Observe never reported it: %w", value, err)
	}
	return nil
}

// The rolling migration of docs/migrating.md for an election: candidates
// still on etcd's concurrency.Election and candidates on election.Election
// campaign on one name at the same time, written the same way on both
// sides, with and without a trailing slash. Every term checks that it is
// the only one (leaderCheck) and that both packages' Leader and Observe
// see it; each candidate leads a fixed number of times.
func TestRollingMigrationMixesWithConcurrencyElection(t *testing.T) {
	const (
		candidates = 2 // of each kind
		rounds     = 5 // terms per candidate
	)
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 120*time.Second)
	for _, slash := range []string{"", "/"} {
		t.Run("name"+slash, func(t *testing.T) {
			name := testutil.Prefix(t) + slash
			obs, err := election.NewObserver(cli, name)
			if err != nil {
				t.Fatal(err)
			}
			check := &leaderCheck{
				cli:       cli,
				counter:   testutil.Prefix(t) + "-counter",
				theirs:    etcdElection(t, cli, name),
				ours:      obs,
				theirSeen: newSightings(),
				ourSeen:   newSightings(),
			}

			// Both observers run for the whole test. Ours reports every
			// change, so it also gives the order of the terms; etcd's
			// reports the current leader, which each leader waits for.
			octx, stop := context.WithCancel(ctx)
			var observers sync.WaitGroup
			var observed []int64
			theirObs := check.theirs.Observe(octx)
			ourObs := obs.Observe(octx)
			observers.Go(func() {
				for resp := range theirObs {
					check.theirSeen.add(string(resp.Kvs[0].Value))
				}
			})
			observers.Go(func() {
				for ld := range ourObs {
					if ld.Token != 0 {
						observed = append(observed, ld.Token)
						check.ourSeen.add(ld.Value)
					}
				}
			})
			defer func() {
				stop()
				observers.Wait()
			}()

			errs := make(chan error, 2*candidates)
			var wg sync.WaitGroup
			for i := range candidates {
				theirs := etcdElection(t, cli, name)
				wg.Go(func() {
					for r := range rounds {
						value := fmt.Sprintf("theirs-%d/%d", i, r)
						if err := theirs.Campaign(ctx, value); err != nil {
							errs <- fmt.Errorf("%s: Campaign: %w", value, err)
							return
						}
						isOwner := clientv3.Compare(clientv3.CreateRevision(theirs.Key()), "=", theirs.Rev())
						err := check.lead(ctx, theirs.Key(), value, theirs.Rev(), isOwner)
						if rerr := theirs.Resign(ctx); err == nil {
							err = rerr
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			for i := range candidates {
				ours := newElection(t, cli, name)
				wg.Go(func() {
					for r := range rounds {
						value := fmt.Sprintf("ours-%d/%d", i, r)
						term, err := ours.Campaign(ctx, value)
						if err != nil {
							errs <- fmt.Errorf("%s: Campaign: %w", value, err)
							return
						}
						err = check.lead(ctx, term.Key(), value, term.Token(), term.IsOwner())
						if rerr := term.Resign(ctx); err == nil {
							err = rerr
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}

			got, err := cli.Get(ctx, check.counter)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(2 * candidates * rounds); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != want {
				t.Fatalf("counter: got %v, want %s", got.Kvs, want)
			}
			// Every leader waited for our Observe to report it, so the
			// last term has been observed; nothing after it can be.
			stop()
			observers.Wait()
			if !slices.Equal(observed, check.tokens) {
				t.Fatalf("our Observe reported the terms %v, want every term in order %v", observed, check.tokens)
			}
		})
	}
}
