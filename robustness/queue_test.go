package robustness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/queue"
)

const (
	queueProducers = 2
	queueConsumers = 3
	// drainTimeout bounds the drain after the faults: every item enqueued
	// must be acked by then.
	drainTimeout = time.Minute
)

// TestRobustQueue runs two producers and three consumers of a queue under
// the nemesis. Producers enqueue through their Queue or through a Producer
// without a session, one item at a time or, one call in four, a batch.
// Consumers ack most items, nack some, and now and then
// "crash" holding one (close their session). After the faults stop,
// consumers drain the queue. Checks:
//
//   - nothing lost: every item whose Enqueue succeeded (or that etcd's
//     history shows written) was acked, exactly once, by the end;
//   - nothing acked twice: at most one Ack of an item returned success, and
//     each successful Ack is the one etcd applied (item and claim deleted
//     together); an Ack that returned ErrClaimLost removed nothing;
//   - Attempts grows with every delivery of an item;
//   - a batch is enqueued whole or not at all, even when its call failed;
//   - porcupine, per item: absent → available (Enqueue) → claimed by c
//     (Dequeue) → acked (Ack by c), with Nack or the end of the claim
//     returning it to available. A claim's end counts from when its
//     consumer learned of it (Done closed, a refused Ack, its session
//     closed) or, for a lease the nemesis revoked, from the revocation: so
//     nobody else may receive the item before that.
func TestRobustQueue(t *testing.T) {
	const (
		prefix = "/robust/queue/"
		name   = prefix + "q"
	)
	e := newEnv(t, queueProducers+queueConsumers)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases()
	var rec queueRecords
	faults, stopFaults := context.WithTimeout(context.Background(), *duration)
	defer stopFaults()
	stopNemesis := e.startNemesis(faults, reg)
	drain, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()

	const consumers = "queue consumers (any)"
	e.track(consumers)
	var wg sync.WaitGroup
	for _, w := range e.workers {
		if w.id < queueProducers {
			wg.Go(func() { e.producer(faults, w, reg, name, &rec) })
		} else {
			wg.Go(func() { e.consumer(drain, w, reg, name, consumers, &rec) })
		}
	}
	<-faults.Done()
	stopNemesis()
	left := e.drain(name)
	stopDrain()
	e.waitWorkers(&wg)
	e.untrack(consumers)
	stopWatchdog()
	stopHistory()

	e.judge(t, "queue", hist, func(cs []change) ([]string, string) {
		violations, notes := e.checkQueue(cs, &rec, name)
		if left != "" {
			violations = append(violations, fmt.Sprintf("the queue was not drained %v after the faults stopped; left: %s", drainTimeout, left))
		}
		return violations, notes
	})
}

// enqueued is one value of an Enqueue or EnqueueBatch call.
type enqueued struct {
	value, id string
	batch     int64 // >0: the values of one EnqueueBatch share it
	call, ret time.Duration
	err       error
}

// delivered is one delivery: its claim is the holding (key: the claim key,
// token: its create revision); the release call is the Ack or the Nack, or
// the session's Close for a consumer that "crashed".
type delivered struct {
	*holding
	value, id string
	attempts  int
	action    string // ack, nack, crash, or "" if the claim ended first
}

type queueRecords struct {
	mu         sync.Mutex
	enqueues   []enqueued
	deliveries []*delivered
	seq        atomic.Int64
}

func (r *queueRecords) enqueue(x enqueued) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enqueues = append(r.enqueues, x)
}

func (r *queueRecords) deliver(d *delivered) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries = append(r.deliveries, d)
}

func (e *env) producer(ctx context.Context, w *worker, reg *leases, name string, out *queueRecords) {
	me := fmt.Sprintf("producer %d", w.id)
	e.track(me)
	defer e.untrack(me)
	x := &sessions{w: w, reg: reg}
	defer x.close()
	var q *queue.Queue
	alone, err := queue.NewProducer(w.cli, name) // no session: its Enqueues outlive none
	if err != nil {
		e.t.Errorf("%s: %v", me, err)
		return
	}
	for ctx.Err() == nil {
		s, fresh, err := x.get(ctx)
		if err != nil {
			return
		}
		if fresh {
			if q, err = queue.New(s, name); err != nil {
				continue
			}
		}
		p := &q.Producer
		if e.intn(2) == 0 {
			p = alone
		}
		values := []string{fmt.Sprintf("item-%d-%d", w.id, out.seq.Add(1))}
		var batch int64
		if e.intn(4) == 0 { // a batch of 2 to 5, all enqueued or none
			batch = out.seq.Add(1)
			for range 1 + e.intn(4) {
				values = append(values, fmt.Sprintf("item-%d-%d", w.id, out.seq.Add(1)))
			}
		}
		qctx, cancel := bounded(ctx)
		call := e.now()
		ids, err := p.EnqueueBatch(qctx, values, queue.WithPriority(e.intn(4)))
		ret := e.now()
		cancel()
		e.op()
		for i, v := range values {
			x := enqueued{value: v, batch: batch, call: call, ret: ret, err: err}
			if err == nil {
				x.id = ids[i]
			}
			out.enqueue(x)
		}
		if err != nil {
			x.failed(err)
			continue
		}
		e.progressed(me)
		sleep(ctx, e.between(2*time.Millisecond, 20*time.Millisecond))
	}
}

func (e *env) consumer(ctx context.Context, w *worker, reg *leases, name, tracker string, out *queueRecords) {
	var ends sync.WaitGroup
	defer ends.Wait()
	x := &sessions{w: w, reg: reg}
	defer x.close()
	var q *queue.Queue
	for ctx.Err() == nil {
		s, fresh, err := x.get(ctx)
		if err != nil {
			return
		}
		if fresh {
			if q, err = queue.New(s, name); err != nil {
				continue
			}
		}
		qctx, cancel := bounded(ctx)
		call := e.now()
		it, err := q.Dequeue(qctx)
		ret := e.now()
		cancel()
		e.op()
		if err != nil {
			x.failed(err)
			continue
		}
		d := &delivered{
			holding:  &holding{worker: w.id, key: it.Key(), token: it.Token(), lease: s.Lease(), call: call, ret: ret},
			value:    it.Value(),
			id:       it.ID(),
			attempts: it.Attempts(),
		}
		out.deliver(d)
		e.watchEnd(d.holding, it, &ends)
		select {
		case <-time.After(e.holdTime()):
		case <-it.Done():
			continue // the claim ended: stop working on it
		}
		switch n := e.intn(100); {
		case n < 5:
			d.action = "crash"
			e.releasing(d.holding, func() error { x.close(); return errors.New("crashed") })
		case n < 15:
			d.action = "nack"
			actx, cancel := cleanupCtx(ctx)
			e.releasing(d.holding, func() error { return it.Nack(actx) })
			cancel()
		default:
			d.action = "ack"
			actx, cancel := cleanupCtx(ctx)
			if e.releasing(d.holding, func() error { return it.Ack(actx) }) == nil {
				e.progressed(tracker)
			}
			cancel()
		}
		if d.action != "crash" && d.relErr != nil && it.Err() == nil {
			// An Ack or Nack that failed without saying the claim had
			// ended may not have taken effect: the claim may live on
			// with the session. Closing the session ends it.
			x.close()
		}
	}
}

// dump lists the keys under prefix, for a report.
func (e *env) dump(prefix string) string {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := e.observer.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, kv := range resp.Kvs {
		parts = append(parts, fmt.Sprintf("%s (created %d, lease %x)", kv.Key, kv.CreateRevision, kv.Lease))
	}
	return strings.Join(parts, ", ")
}

// drain waits until no item is left in the queue. After drainTimeout it
// gives up and returns what is left under the queue's prefix.
func (e *env) drain(name string) (left string) {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	for {
		resp, err := e.observer.Get(ctx, name+"/items/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 0 {
			return ""
		}
		select {
		case <-ctx.Done():
			return e.dump(name + "/")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Item states of the queue model.
const (
	itemAbsent = iota
	itemAvailable
	itemClaimed
	itemAcked
)

type itemState struct {
	phase int
	claim int64 // the claim's token while claimed
}

// itemInput is one operation on an item: op is "enqueue", "dequeue",
// "ack", "release" (a Nack, or the claim's end), or "refused" (an Ack or
// Nack that returned ErrClaimLost: legal only if the claim had ended).
type itemInput struct {
	op    string
	claim int64
}

var itemModel = porcupine.Model{
	Init: func() any { return itemState{} },
	Step: func(state, input, _ any) (bool, any) {
		s, in := state.(itemState), input.(itemInput)
		held := s.phase == itemClaimed && s.claim == in.claim
		switch in.op {
		case "enqueue":
			return s.phase == itemAbsent, itemState{phase: itemAvailable}
		case "dequeue":
			return s.phase == itemAvailable, itemState{itemClaimed, in.claim}
		case "ack":
			return held, itemState{phase: itemAcked}
		case "release":
			return held, itemState{phase: itemAvailable}
		case "refused":
			return !held, s
		}
		return false, s
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(itemInput)
		return fmt.Sprintf("%s %d", in.op, in.claim)
	},
	DescribeState: func(state any) string { return fmt.Sprint(state.(itemState)) },
}

func (e *env) checkQueue(cs []change, rec *queueRecords, name string) (violations []string, notes string) {
	bad := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	itemsDir, claimsDir := name+"/items/", name+"/claims/"

	// What etcd did to each item (by value) and each claim.
	type itemHistory struct {
		key     string
		written change
		deleted *change
		ackedBy int64 // the claim deleted in the same transaction
	}
	items := map[string]*itemHistory{} // by value
	byKey := map[string]*itemHistory{}
	for _, rev := range revisions(cs) {
		var claimGone int64
		for _, c := range rev {
			if c.del && strings.HasPrefix(c.key, claimsDir) {
				claimGone = c.create
			}
		}
		for _, c := range rev {
			if !strings.HasPrefix(c.key, itemsDir) {
				continue
			}
			switch {
			case !c.del && c.version == 1:
				if items[c.value] != nil {
					bad("value %s enqueued twice (%s and %s)", c.value, items[c.value].key, c.key)
				}
				ih := &itemHistory{key: c.key, written: c}
				items[c.value], byKey[c.key] = ih, ih
			case c.del:
				ih := byKey[c.key]
				if ih == nil {
					continue
				}
				if ih.deleted != nil {
					bad("item %s deleted twice", c.key)
				}
				ih.deleted = &c
				ih.ackedBy = claimGone
				if claimGone == 0 {
					bad("item %s (%s) deleted at revision %d without a claim: not by an Ack", c.key, c.value, c.rev)
				}
			}
		}
	}

	rec.mu.Lock()
	enqueues, deliveries := slices.Clone(rec.enqueues), slices.Clone(rec.deliveries)
	rec.mu.Unlock()
	revoked := e.revokedAt()
	gone := ends(cs)
	end := e.now()
	ops := map[string][]porcupine.Operation{} // by value
	add := func(value string, in itemInput, worker int, call, ret time.Duration) {
		ops[value] = append(ops[value], porcupine.Operation{ClientId: worker, Input: in, Call: int64(call), Return: int64(max(call, ret))})
	}

	failedEnqueues := 0
	batches := map[int64][2]int{} // batch: values in etcd, values
	for _, x := range enqueues {
		ih := items[x.value]
		if x.batch > 0 {
			n := batches[x.batch]
			if ih != nil {
				n[0]++
			}
			n[1]++
			batches[x.batch] = n
		}
		switch {
		case x.err == nil && ih == nil:
			bad("Enqueue of %s returned %s but etcd never had it", x.value, x.id)
		case x.err == nil:
			add(x.value, itemInput{op: "enqueue"}, 0, x.call, x.ret)
		case ih != nil: // failed, yet written: it counts from when it was seen
			failedEnqueues++
			add(x.value, itemInput{op: "enqueue"}, 0, x.call, ih.written.seen)
		}
	}
	for b, n := range batches {
		if n[0] != 0 && n[0] != n[1] {
			bad("batch %d: %d of its %d items enqueued, want all or none", b, n[0], n[1])
		}
	}
	for value, ih := range items {
		if ih.deleted == nil {
			var what []string
			for _, d := range deliveries {
				if d.value == value {
					what = append(what, fmt.Sprintf("claim %d by worker %d: %q → %v (Done: %v)", d.token, d.worker, d.action, d.relErr, d.doneErr))
				}
			}
			bad("item %s (%s) lost: never acked; deliveries: %s", ih.key, value, strings.Join(what, "; "))
		}
	}

	acks := map[string]int{}
	byItem := map[string][]*delivered{}
	for _, d := range deliveries {
		byItem[d.value] = append(byItem[d.value], d)
		ih := items[d.value]
		if ih == nil {
			bad("worker %d received %s, which etcd never had", d.worker, d.value)
			continue
		}
		add(d.value, itemInput{"dequeue", d.token}, d.worker, d.call, d.ret)
		d.mu.Lock()
		relCall, relRet, relErr, action := d.relCall, d.relRet, d.relErr, d.action
		d.mu.Unlock()
		ackedHere := ih.ackedBy == d.token
		if action == "ack" && relErr == nil {
			acks[d.value]++
			if !ackedHere {
				bad("worker %d's Ack of %s (claim %d) returned success, but etcd removed the item with claim %d", d.worker, d.value, d.token, ih.ackedBy)
			}
		}
		if action == "ack" && errors.Is(relErr, queue.ErrClaimLost) && ackedHere {
			bad("worker %d's Ack of %s (claim %d) returned %v, but removed the item", d.worker, d.value, d.token, relErr)
		}
		if (action == "ack" || action == "nack") && errors.Is(relErr, queue.ErrClaimLost) {
			add(d.value, itemInput{"refused", d.token}, d.worker, relCall, relRet)
		}
		if ackedHere {
			if action != "ack" {
				bad("item %s removed with claim %d of worker %d, which did not ack it", d.value, d.token, d.worker)
				continue
			}
			done := end
			if c, ok := gone[d.inc()]; ok {
				done = c.seen
			}
			if relErr == nil {
				done = min(done, relRet)
			}
			add(d.value, itemInput{"ack", d.token}, d.worker, relCall, done)
			continue
		}
		learned := d.learned(revoked, end)
		if action == "nack" && relErr == nil {
			add(d.value, itemInput{"release", d.token}, d.worker, learned, min(relRet, d.ended(gone, end)))
			continue
		}
		add(d.value, itemInput{"release", d.token}, d.worker, learned, d.ended(gone, end))
	}
	for value, n := range acks {
		if n > 1 {
			bad("%s acked %d times", value, n)
		}
	}
	for value, ds := range byItem {
		slices.SortFunc(ds, func(a, b *delivered) int { return cmp.Compare(a.token, b.token) })
		for i, d := range ds {
			if d.attempts < i+1 || (i > 0 && d.attempts <= ds[i-1].attempts) {
				bad("delivery %d of %s (claim %d) reports %d attempts", i+1, value, d.token, d.attempts)
			}
		}
	}

	var holdings []*holding
	for _, d := range deliveries {
		holdings = append(holdings, d.holding)
	}
	violations = append(violations, lateEnds(holdings, revoked, gone, end)...)

	illegal, unknown := 0, 0
	values := make([]string, 0, len(ops))
	for v := range ops {
		values = append(values, v)
	}
	slices.Sort(values)
	for _, v := range values {
		violation, conclusive := linearizable("queue-item", itemModel, ops[v])
		if violation != "" {
			illegal++
			if illegal <= 10 {
				bad("item %s: %s", v, violation)
			}
		}
		if !conclusive {
			unknown++
		}
	}
	if illegal > 10 {
		bad("%d more items not linearizable", illegal-10)
	}
	verdict := "every item linearizable"
	if illegal > 0 {
		verdict = fmt.Sprintf("%d items NOT linearizable", illegal)
	}
	if unknown > 0 {
		verdict += fmt.Sprintf(", %d inconclusive", unknown)
	}
	actions := map[string]int{}
	for _, d := range deliveries {
		actions[d.action]++
	}
	acked := 0
	for _, n := range acks {
		acked += n
	}
	notes = fmt.Sprintf("%d items enqueued (%d of them by an Enqueue that returned an error; %d batches), %d deliveries: %d Acks (%d succeeded), %d Nacks, %d crashed consumers, %d claims lost before the consumer acted; porcupine: %s",
		len(items), failedEnqueues, len(batches), len(deliveries), actions["ack"], acked, actions["nack"], actions["crash"], actions[""], verdict)
	return violations, notes
}
