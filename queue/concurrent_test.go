package queue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

// workload is one run of producers and consumers over one queue.
type workload struct {
	producers, perProducer, consumers int
	minPrio, maxPrio                  int
	killRate                          float64 // chance that a consumer dies holding an item
}

// The consumers start once this many items are enqueued, so that a backlog
// exists and priorities decide what is served first.
const backlog = 4

// enqueued is one item as its producer saw it.
type enqueued struct {
	id             string
	producer, seq  int
	prio           int
	done           int64 // clock after Enqueue returned
	firstStart     int64 // clock before the Dequeue call that first delivered it
	firstDelivered bool
}

// delivery is one item as a consumer saw it.
type delivery struct {
	consumer      int
	id            string
	producer, seq int
	prio          int
	attempts      int
	token         int64
	start, ret    int64 // clock before Dequeue was called and after it returned
	killed        bool  // the consumer's session was revoked before Ack
	ackErr        error
}

// scale returns the full size normally, and a smaller one under the race
// detector or -short.
func scale(full, small int) int {
	if raceEnabled || testing.Short() {
		return small
	}
	return full
}

// run executes w and returns what producers enqueued (by ID) and what each
// consumer received, in order.
func (w workload) run(t *testing.T) (map[string]*enqueued, [][]delivery) {
	t.Helper()
	ctx := testutil.Context(t, 5*time.Minute)
	prefix := testutil.Prefix(t)
	total := w.producers * w.perProducer
	var clock atomic.Int64 // orders events across goroutines

	var (
		errMu sync.Mutex
		errs  []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}

	items := make([][]enqueued, w.producers)
	deliveries := make([][]delivery, w.consumers)
	var acked atomic.Int64
	cctx, stop := context.WithCancel(ctx)
	defer stop()

	var enqueuedN atomic.Int64
	startConsumers := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < w.consumers; c++ {
		cli := testutil.Client(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-startConsumers:
			case <-cctx.Done():
				return
			}
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for cctx.Err() == nil {
				if !w.consume(cctx, cli, prefix, c, rng, &clock, &acked, total, &deliveries[c], fail) {
					return
				}
			}
		}()
	}
	mcli := testutil.Client(t)
	mq := newQueue(t, testutil.Session(t, mcli), prefix)
	monitorDone := make(chan struct{})
	var lens []int
	compactions := 0
	go func() {
		// Start the consumers on a backlog and stop them once every item
		// is acked; meanwhile sample the queue's length.
		defer close(monitorDone)
		started := false
		tick := 0
		for cctx.Err() == nil && acked.Load() < int64(total) {
			if !started && enqueuedN.Load() >= int64(total/backlog) {
				close(startConsumers)
				started = true
			}
			if n, err := mq.Len(cctx); err == nil && started {
				lens = append(lens, n)
			}
			if tick++; tick%20 == 0 {
				// Compact as a production cluster does on its own
				// (--auto-compaction-*): watches must survive it, and
				// keys deleted long ago stop costing every read.
				if resp, err := mcli.Get(cctx, "compaction-probe"); err == nil {
					mcli.Compact(cctx, resp.Header.Revision)
					compactions++
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		stop()
	}()
	var pwg sync.WaitGroup
	for p := 0; p < w.producers; p++ {
		cli := testutil.Client(t)
		s := testutil.Session(t, cli)
		q := newQueue(t, s, prefix)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 11))
			for i := 0; i < w.perProducer; i++ {
				prio := w.minPrio + rng.IntN(w.maxPrio-w.minPrio+1)
				id, err := q.Enqueue(ctx, fmt.Sprintf("%d/%d", p, i), queue.WithPriority(prio))
				if err != nil {
					fail(fmt.Errorf("producer %d: Enqueue %d: %w", p, i, err))
					return
				}
				items[p] = append(items[p], enqueued{id: id, producer: p, seq: i, prio: prio, done: clock.Add(1)})
				enqueuedN.Add(1)
			}
		}()
	}
	pwg.Wait()
	wg.Wait()
	<-monitorDone
	if len(lens) > 0 {
		sum, most := 0, 0
		for _, n := range lens {
			sum, most = sum+n, max(most, n)
		}
		t.Logf("queue length while consuming: mean %d, max %d; %d compactions", sum/len(lens), most, compactions)
	}
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	byID := map[string]*enqueued{}
	for p := range items {
		for i := range items[p] {
			byID[items[p][i].id] = &items[p][i]
		}
	}
	return byID, deliveries
}

// consume runs one consumer session until it is killed (true: start a new
// one) or the run ends (false).
func (w workload) consume(ctx context.Context, cli *clientv3.Client, prefix string, c int, rng *rand.Rand,
	clock, acked *atomic.Int64, total int, out *[]delivery, fail func(error)) bool {
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		if ctx.Err() == nil {
			fail(fmt.Errorf("consumer %d: session: %w", c, err))
		}
		return false
	}
	defer s.Close()
	q, err := queue.New(s, prefix)
	if err != nil {
		fail(err)
		return false
	}
	for {
		start := clock.Add(1)
		it, err := q.Dequeue(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fail(fmt.Errorf("consumer %d: Dequeue: %w", c, err))
			}
			return false
		}
		d := delivery{consumer: c, id: it.ID(), prio: it.Priority(), attempts: it.Attempts(),
			token: it.Token(), start: start, ret: clock.Add(1)}
		fmt.Sscanf(it.Value(), "%d/%d", &d.producer, &d.seq)
		if rng.Float64() < w.killRate {
			// Die holding the item: the lease goes, as if the process
			// crashed and its lease expired. Ack must then fail.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, err := cli.Revoke(rctx, s.Lease())
			cancel()
			if err != nil {
				fail(fmt.Errorf("consumer %d: revoke: %w", c, err))
				return false
			}
			d.killed = true
			d.ackErr = it.Ack(context.WithoutCancel(ctx))
			*out = append(*out, d)
			return true
		}
		d.ackErr = it.Ack(context.WithoutCancel(ctx))
		*out = append(*out, d)
		if d.ackErr == nil {
			acked.Add(1)
		}
	}
}

func TestManyProducersManyConsumers(t *testing.T) {
	w := workload{producers: 4, perProducer: scale(2000, 200), consumers: 8, minPrio: -3, maxPrio: 3}
	items, deliveries := w.run(t)
	checkAckedOnce(t, items, deliveries)
	var all []delivery
	for c, ds := range deliveries {
		t.Logf("consumer %d: %d items", c, len(ds))
		all = append(all, ds...)
		for _, d := range ds {
			if d.attempts != 1 {
				t.Errorf("item %s delivered with attempts %d; nothing failed in this run", d.id, d.attempts)
			}
		}
		checkConsumerFIFO(t, c, ds)
	}
	checkServedInOrder(t, items, all)
}

func TestManyConsumersDying(t *testing.T) {
	w := workload{producers: 4, perProducer: scale(2000, 200), consumers: 8, minPrio: -3, maxPrio: 3, killRate: 0.02}
	items, deliveries := w.run(t)
	checkAckedOnce(t, items, deliveries)
	byItem := map[string][]delivery{}
	kills := 0
	for _, ds := range deliveries {
		for _, d := range ds {
			byItem[d.id] = append(byItem[d.id], d)
			if d.killed {
				kills++
				if !errors.Is(d.ackErr, queue.ErrClaimLost) {
					t.Errorf("Ack after the consumer died: got %v, want ErrClaimLost", d.ackErr)
				}
			}
		}
	}
	redelivered := 0
	for id, ds := range byItem {
		// In claim order, the deliveries of one item count 1, 2, 3...: every
		// redelivery says so, and no delivery went unseen.
		sort.Slice(ds, func(i, j int) bool { return ds[i].token < ds[j].token })
		for i, d := range ds {
			if d.attempts != i+1 {
				t.Errorf("item %s: delivery %d has attempts %d, want %d", id, i+1, d.attempts, i+1)
			}
			if i < len(ds)-1 && !d.killed {
				t.Errorf("item %s: delivered again after a delivery whose consumer did not die", id)
			}
		}
		if len(ds) > 1 {
			redelivered++
		}
	}
	t.Logf("%d consumers killed holding an item, %d items redelivered", kills, redelivered)
	if kills == 0 {
		t.Fatal("no consumer was killed; the test tested nothing")
	}
}

// checkAckedOnce checks that every enqueued item was acked exactly once and
// that nothing else was delivered.
func checkAckedOnce(t *testing.T, items map[string]*enqueued, deliveries [][]delivery) {
	t.Helper()
	acks := map[string]int{}
	for _, ds := range deliveries {
		for _, d := range ds {
			it, ok := items[d.id]
			if !ok {
				t.Fatalf("delivered %s, which nobody enqueued", d.id)
			}
			if d.producer != it.producer || d.seq != it.seq || d.prio != it.prio {
				t.Fatalf("item %s: got (producer %d, seq %d, prio %d), want (%d, %d, %d)",
					d.id, d.producer, d.seq, d.prio, it.producer, it.seq, it.prio)
			}
			if d.ackErr == nil {
				acks[d.id]++
			} else if !d.killed {
				t.Errorf("Ack %s: %v", d.id, d.ackErr)
			}
		}
	}
	for id := range items {
		if acks[id] != 1 {
			t.Errorf("item %s acked %d times, want 1", id, acks[id])
		}
	}
}

// checkConsumerFIFO checks that one consumer received the items of each
// producer and priority in the order they were enqueued. With concurrent
// producers, the order between two producers' items of one priority is the
// order their Enqueues took effect, which the test cannot observe; the
// order of one producer's items is its program order.
func checkConsumerFIFO(t *testing.T, c int, ds []delivery) {
	t.Helper()
	type stream struct{ producer, prio int }
	last := map[stream]int{}
	for _, d := range ds {
		k := stream{d.producer, d.prio}
		if prev, ok := last[k]; ok && d.seq <= prev {
			t.Errorf("consumer %d: producer %d priority %d: got seq %d after %d", c, d.producer, d.prio, d.seq, prev)
		}
		last[k] = d.seq
	}
}

// checkServedInOrder checks priority and FIFO order across consumers, as far
// as concurrency lets anyone define it: if item y comes before item x in the
// queue's order (a lower priority value, or the same priority and enqueued
// earlier) and y's Enqueue had returned before the Dequeue that delivered x
// was called, then y was not left for a later Dequeue: the call that
// delivered y had started before the call that delivered x returned. (Two
// Dequeues in flight at once may finish in either order.)
func checkServedInOrder(t *testing.T, items map[string]*enqueued, ds []delivery) {
	t.Helper()
	for _, d := range ds {
		it := items[d.id]
		if !it.firstDelivered || d.start < it.firstStart {
			it.firstStart, it.firstDelivered = d.start, true
		}
	}
	ordered := make([]*enqueued, 0, len(items))
	for _, it := range items {
		ordered = append(ordered, it)
	}
	// IDs sort in the queue's order: priority, then the order in which
	// Enqueues took effect.
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].id < ordered[j].id })
	index := map[string]int{}
	for i, it := range ordered {
		index[it.id] = i
	}
	violations := 0
	for _, x := range ds {
		if x.attempts != 1 {
			continue
		}
		for _, y := range ordered[:index[x.id]] {
			if y.done < x.start && y.firstStart > x.ret {
				if violations < 10 {
					t.Errorf("item %s (priority %d) was delivered by a Dequeue called after the one that delivered %s (priority %d) returned, although it was enqueued before that one was called",
						y.id, y.prio, x.id, x.prio)
				}
				violations++
			}
		}
	}
	if violations > 0 {
		t.Errorf("%d order violations", violations)
	}
}
