package queue

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/history"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// requestAllowance is what a request needs besides its value: the Txn
// framing, the compare and the ops, each holding a key. Four keys cover the
// largest request that carries a value (a dead-letter move).
const requestAllowance = 1024

// Producer adds items to a queue and counts them, from an etcd client
// alone: it holds no session and writes nothing under a lease, so a process
// that only produces (or a command that pushes one item) needs no lease.
// A Queue is a Producer that also consumes. NewProducer does no I/O; a
// Producer is safe for concurrent use.
type Producer struct {
	cli    *clientv3.Client
	s      *lockstep.Session // the Queue's session; nil for a Producer alone
	prefix string
	layout
	maxValue   int
	maxRequest int

	// lastRev is the newest revision this Producer has seen the server at:
	// what an Enqueue that lost an answer reads history from.
	lastRev   atomic.Int64
	lastRevAt atomic.Int64 // when lastRev was seen, in Unix nanoseconds
}

// NewProducer returns a producer for the queue named prefix. Give it the
// options its consumers use: WithMaxRequestBytes and WithDeadLetter set the
// largest value Enqueue accepts (an item must still fit in a request when
// it is moved to the dead-letter queue).
//
// It returns lockstep.ErrNilClient for a nil client, and the errors New returns for
// the prefix and the options.
func NewProducer(cli *clientv3.Client, prefix string, opts ...Option) (*Producer, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	p := &Producer{}
	if _, err := p.init(cli, nil, prefix, opts); err != nil {
		return nil, err
	}
	return p, nil
}

// init validates prefix and opts and sets p up for them; s is nil for a
// Producer alone. It returns the options, which a Queue uses too.
func (p *Producer) init(cli *clientv3.Client, s *lockstep.Session, prefix string, opts []Option) (options, error) {
	if err := keys.CheckPrefix(prefix); err != nil {
		return options{}, fmt.Errorf("queue: %w", err)
	}
	o := options{maxRequest: DefaultMaxRequestBytes}
	for _, opt := range opts {
		opt(&o)
	}
	p.cli, p.s, p.prefix, p.layout = cli, s, prefix, newLayout(prefix)
	longest := len(p.claims) + idLen
	if o.deadSet {
		if err := checkDeadLetter(prefix, o.deadLetter, o.maxAttempts); err != nil {
			return options{}, err
		}
		longest = max(longest, len(newLayout(o.deadLetter).items)+idLen)
	}
	p.maxRequest = o.maxRequest
	p.maxValue = o.maxRequest - requestAllowance - 4*longest
	if p.maxValue < 0 {
		return options{}, fmt.Errorf("%w: max request bytes %d leaves no room for a value", ErrInvalidOption, o.maxRequest)
	}
	return o, nil
}

// Client returns the etcd client the producer uses.
func (p *Producer) Client() *clientv3.Client { return p.cli }

// sessionErr wraps the Err of the Queue's session if it ended; nil for a
// Producer alone.
func (p *Producer) sessionErr() error {
	if p.s == nil {
		return nil
	}
	if err := p.s.Err(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// MaxValueSize is the largest value Enqueue accepts: the server's request
// limit (WithMaxRequestBytes) less an allowance for the keys and framing.
func (p *Producer) MaxValueSize() int { return p.maxValue }

// Enqueue adds value with a priority (WithPriority, default 0) and returns
// its ID. The item is durable: it stays until a consumer acks it, whatever
// happens to the producer. Lower priority values are served first; within
// one priority, items are served in the order their Enqueue calls took
// effect, which respects real time: an item enqueued after another's
// Enqueue returned is served after it.
//
// It costs one round trip; a concurrent Enqueue of the same priority can
// cost it one more. It returns ErrInvalidPriority or ErrTooLarge, and,
// called on a Queue, an error wrapping the session's Err if the session
// ended, before writing anything. Errors that may pass are retried, and a retry finds the item
// an attempt whose answer was lost enqueued, even if it was served and
// acked meanwhile (from etcd's history), so it is not enqueued twice. It
// returns ErrOutcomeUnknown if that history was compacted first.
//
// If it returns another error, the item may or may not have been
// enqueued.
func (p *Producer) Enqueue(ctx context.Context, value string, opts ...EnqueueOption) (string, error) {
	ids, err := p.enqueue(ctx, "enqueue", []string{value}, opts)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// enqueue writes values as consecutive items of one priority in one
// transaction and returns their IDs.
func (p *Producer) enqueue(ctx context.Context, op string, values []string, opts []EnqueueOption) ([]string, error) {
	var o enqueueOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPriority(o.priority); err != nil {
		return nil, err
	}
	if err := p.checkSize(values); err != nil {
		return nil, err
	}
	if err := p.sessionErr(); err != nil {
		return nil, err
	}
	bucket := p.items + encodePriority(o.priority) + "/"
	end := clientv3.GetPrefixRangeEnd(bucket)
	var floor uint64
	for {
		ids := make([]string, len(values))
		for i := range ids {
			ids[i] = newID(o.priority, floor)
		}
		res, err := p.put(ctx, ids, values, end, rpc.Txn{})
		if err != nil {
			return nil, p.rpcErr(ctx, op, err)
		}
		if res == nil || res.Succeeded || len(res.Responses[1].GetResponseRange().Kvs) == 1 {
			return ids, nil
		}
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // the key that was in the way is gone already
		}
		last := strings.TrimPrefix(string(kvs[0].Key), p.items)
		if !validID(last) || stampOf(last) > math.MaxUint64-uint64(len(values)) {
			return nil, fmt.Errorf("%w: %q under %s: no item can be enqueued after it", ErrMalformed, kvs[0].Key, p.items)
		}
		floor = stampOf(last) + 1
	}
}

// put writes the items ids (all of them or none) if the first sorts after
// every item of its priority still present (end closes the priority's
// range): then key order is the order in which Enqueues took effect,
// whatever the producers' clocks say. If it would not, the Else branch
// returns the last key, so that the next try can go past it, and the
// first key itself.
//
// An attempt that went unanswered may have been applied, and its items
// served and acked before the next attempt, which the guard would then let
// through: a second copy. So before each retry put looks in etcd's history
// for the first key, and returns a nil response if it finds it.
//
// also adds to the transaction: compares, ops, and reads in the Else
// branch after put's own two.
func (p *Producer) put(ctx context.Context, ids, values []string, end string, also rpc.Txn) (*clientv3.TxnResponse, error) {
	first := p.items + ids[0]
	puts := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		puts[i] = clientv3.OpPut(p.items+id, values[i])
	}
	var resp *clientv3.TxnResponse
	from, sent, landed := p.recentRev(), false, false
	err := rpc.Do(ctx, p.cli, p.s, func(ctx context.Context) error {
		if sent {
			var err error
			if landed, err = p.written(ctx, first, from); err != nil || landed {
				return err
			}
		}
		if from == 0 { // nothing read lately to date the first attempt by
			now, err := p.cli.Get(ctx, end, clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			from = now.Header.Revision
		}
		sent = true
		var err error
		resp, err = p.cli.Txn(ctx).
			If(append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(first), "=", 0).WithRange(end)}, also.If...)...).
			Then(append(puts, also.Then...)...).
			Else(append([]clientv3.Op{clientv3.OpGet(first, clientv3.WithRange(end), clientv3.WithKeysOnly(),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1)),
				clientv3.OpGet(first, clientv3.WithKeysOnly())}, also.Else...)...).
			Commit()
		if err == nil {
			p.saw(resp.Header.Revision)
		}
		return err
	})
	if err != nil || landed {
		return nil, err
	}
	return resp, nil
}

// written reports whether key was written at revision from or later: it is
// there now, or etcd's history has it.
func (p *Producer) written(ctx context.Context, key string, from int64) (bool, error) {
	now, err := p.cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil || now.Count > 0 {
		return now != nil && now.Count > 0, err
	}
	events, compacted, err := history.Between(ctx, p.cli, history.Range{Key: key}, from, now.Header.Revision)
	if err != nil {
		return false, err
	}
	if compacted != 0 {
		return false, fmt.Errorf("%w: %s: history before revision %d compacted", ErrOutcomeUnknown, key, compacted)
	}
	return len(events) > 0, nil
}

// saw records a revision the server has reached: an attempt sent later
// cannot be applied before it.
func (p *Producer) saw(rev int64) {
	for {
		old := p.lastRev.Load()
		if rev <= old {
			return
		}
		if p.lastRev.CompareAndSwap(old, rev) {
			p.lastRevAt.Store(time.Now().UnixNano())
			return
		}
	}
}

// recentRev is the newest revision seen if it was seen lately, else 0: an
// old one may be compacted by the time history is read from it.
func (p *Producer) recentRev() int64 {
	if time.Since(time.Unix(0, p.lastRevAt.Load())) > time.Minute {
		return 0
	}
	return p.lastRev.Load()
}

// Len returns the number of items in the queue that have not been acked,
// claimed or not. It costs one round trip.
func (p *Producer) Len(ctx context.Context) (int, error) {
	resp, err := rpc.Get(ctx, p.cli, p.s, p.items, clientv3.WithRange(p.itemsEnd), clientv3.WithCountOnly())
	if err != nil {
		return 0, p.rpcErr(ctx, "len", err)
	}
	return int(resp.Count), nil
}

// rpcErr turns the error of an etcd call into the one to return: ctx's error
// if ctx ended, else the error with what failed.
func (p *Producer) rpcErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("queue: %s %s: %w", op, p.prefix, err)
}
