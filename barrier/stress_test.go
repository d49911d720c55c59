package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// stressRounds is how many rounds the stress tests run: the full 500 in a
// normal run, fewer under -race or -short, where each round costs several
// times more on a two-core machine.
func stressRounds() int {
	switch {
	case testing.Short():
		return 50
	case raceEnabled:
		return 100
	}
	return 500
}

// Steps a worker records in etcd, in this order, every round.
const (
	stepEnter   = "enter"   // about to call Enter
	stepEntered = "entered" // Enter returned
	stepLeave   = "leave"   // about to call Leave
	stepLeft    = "left"    // Leave returned
)

// record is one step of one worker, ordered by the etcd revision of the key
// the worker wrote for it.
type record struct {
	worker string
	round  int64 // Round() of the round the step belongs to
	step   string
	rev    int64
}

// recorder writes each step as an etcd key and keeps the revision the
// write got: the revisions order the steps of all workers.
type recorder struct {
	cli    *clientv3.Client
	prefix string

	mu   sync.Mutex
	recs []record
}

// A write that fails is tried again (a member may be down): the step still
// happened before the write's revision, which is all the checks use.
func (r *recorder) add(ctx context.Context, worker string, round int64, step string) error {
	var resp *clientv3.PutResponse
	var err error
	for attempt := 0; ; attempt++ {
		resp, err = r.cli.Put(ctx, fmt.Sprintf("%s/%s/%d/%s", r.prefix, worker, round, step), "")
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt == 50 {
			return fmt.Errorf("record %s %s: %w", worker, step, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.mu.Lock()
	r.recs = append(r.recs, record{worker, round, step, resp.Header.Revision})
	r.mu.Unlock()
	return nil
}

// work runs rounds rounds of Enter and Leave for one worker, recording
// each step. With stop, it stops after Enter of round stopAt, reports on
// stop and waits for proceed before calling Leave, whose error it returns.
func work(ctx context.Context, rec *recorder, name string, d *barrier.DoubleBarrier, rounds int, pause func(i int)) error {
	for i := range rounds {
		if err := rec.add(ctx, name, d.Round(), stepEnter); err != nil {
			return err
		}
		if err := d.Enter(ctx); err != nil {
			return fmt.Errorf("%s: Enter %d: %w", name, i, err)
		}
		if err := rec.add(ctx, name, d.Round(), stepEntered); err != nil {
			return err
		}
		if pause != nil {
			pause(i)
		}
		if err := rec.add(ctx, name, d.Round(), stepLeave); err != nil {
			return err
		}
		if err := d.Leave(ctx); err != nil {
			return fmt.Errorf("%s: Leave %d: %w", name, i, err)
		}
		if err := rec.add(ctx, name, d.Round(), stepLeft); err != nil {
			return err
		}
	}
	return nil
}

// checkOrder checks the records of a run: every round has count entered
// workers; in every round, Enter returned only after every worker of the
// round had called it, and Leave only after every worker had called it
// (or had died: dead maps a worker to the revision of its death); and no
// worker entered round k+1 before every worker of round k had called Leave
// or died.
func checkOrder(t *testing.T, recs []record, count, rounds int, dead map[string]int64) {
	t.Helper()
	type roundRecs struct {
		first, last map[string]int64 // per step: lowest and highest revision
		entered     int
	}
	byRound := map[int64]*roundRecs{}
	for _, rc := range recs {
		if rc.step == stepEnter {
			continue // recorded with the previous round's identity
		}
		rr := byRound[rc.round]
		if rr == nil {
			rr = &roundRecs{first: map[string]int64{}, last: map[string]int64{}}
			byRound[rc.round] = rr
		}
		if rc.step == stepEntered {
			rr.entered++
		}
		rev := rc.rev
		if d, ok := dead[rc.worker]; ok && rc.step == stepLeave && rev > d {
			rev = d // it counts as having left when it died
		}
		if f, ok := rr.first[rc.step]; !ok || rev < f {
			rr.first[rc.step] = rev
		}
		rr.last[rc.step] = max(rr.last[rc.step], rev)
	}
	ids := make([]int64, 0, len(byRound))
	for id := range byRound {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) != rounds {
		t.Fatalf("got %d rounds, want %d", len(ids), rounds)
	}
	for k, id := range ids {
		rr := byRound[id]
		if rr.entered != count {
			t.Fatalf("round %d (%d): %d workers entered, want %d", k, id, rr.entered, count)
		}
		if rr.last[stepLeave] >= rr.first[stepLeft] {
			t.Fatalf("round %d (%d): a worker's Leave returned at revision %d, before another called Leave at %d",
				k, id, rr.first[stepLeft], rr.last[stepLeave])
		}
		if k+1 < len(ids) {
			next := byRound[ids[k+1]]
			if rr.last[stepLeave] >= next.first[stepEntered] {
				t.Fatalf("round %d (%d): a worker entered the next round at revision %d, before another called Leave at %d",
					k, id, next.first[stepEntered], rr.last[stepLeave])
			}
		}
	}
}

// TestDoubleBarrierManyRounds runs 8 workers through 500 rounds of the same
// double barrier and checks from etcd revisions that no worker ever entered
// a round before all had called Leave of the previous one.
func TestDoubleBarrierManyRounds(t *testing.T) {
	const workers = 8
	rounds := stressRounds()
	ctx := testutil.Context(t, 5*time.Minute)
	prefix := testutil.Prefix(t)
	rec := &recorder{cli: testutil.Client(t), prefix: testutil.Prefix(t)}

	errs := make(chan error, workers)
	for i := range workers {
		cli := testutil.Client(t)
		d, err := barrier.NewDouble(testutil.Session(t, cli), prefix, workers)
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- work(ctx, rec, fmt.Sprintf("w%d", i), d, rounds, nil) }()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkOrder(t, rec.recs, workers, rounds, nil)
	if ks := keysUnder(t, ctx, rec.cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the last round: %v", ks)
	}
}

// TestDoubleBarrierManyRoundsWithReplacement is the same run with one
// worker's session revoked in the middle of a round, between its Enter and
// its Leave; a replacement with a new session joins and finishes its
// rounds.
func TestDoubleBarrierManyRoundsWithReplacement(t *testing.T) {
	const workers = 8
	rounds := stressRounds()
	stopAt := rounds / 2
	ctx := testutil.Context(t, 5*time.Minute)
	prefix := testutil.Prefix(t)
	rec := &recorder{cli: testutil.Client(t), prefix: testutil.Prefix(t)}

	errs := make(chan error, workers+1)
	var victim *barrier.DoubleBarrier
	var victimSession *lockstep.Session
	paused, proceed := make(chan struct{}), make(chan struct{})
	for i := range workers {
		cli := testutil.Client(t)
		s := testutil.Session(t, cli)
		d, err := barrier.NewDouble(s, prefix, workers)
		if err != nil {
			t.Fatal(err)
		}
		var pause func(int)
		if i == 0 {
			victim, victimSession = d, s
			pause = func(k int) {
				if k == stopAt {
					paused <- struct{}{}
					<-proceed
				}
			}
		}
		go func() { errs <- work(ctx, rec, fmt.Sprintf("w%d", i), d, rounds, pause) }()
	}

	select {
	case <-paused:
	case err := <-errs:
		t.Fatalf("before the revoke: %v", err)
	}
	// testutil.Revoke, but keeping the revision at which the lease and the
	// victim's key went.
	resp, err := rec.cli.Revoke(ctx, victimSession.Lease())
	if err != nil {
		t.Fatal(err)
	}
	died := resp.Header.Revision
	close(proceed)
	if err := <-errs; !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("victim: got %v, want ErrSessionLost", err)
	}
	_ = victim

	replacement, err := barrier.NewDouble(testutil.Session(t, testutil.Client(t)), prefix, workers)
	if err != nil {
		t.Fatal(err)
	}
	go func() { errs <- work(ctx, rec, "replacement", replacement, rounds-stopAt-1, nil) }()
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkOrder(t, rec.recs, workers, rounds, map[string]int64{"w0": died})
	if ks := keysUnder(t, ctx, rec.cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the last round: %v", ks)
	}
}
