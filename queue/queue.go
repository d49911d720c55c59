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

// Queue is a durable priority work queue named by a key prefix, used
// through one session: items it claims are attached to that session's
// lease. New does no I/O. A Queue is safe for concurrent use; its
// goroutines, and those of other Queues with the same prefix in this
// process, pick different items instead of racing for the same one.
type Queue struct {
	s      *lockstep.Session
	cli    *clientv3.Client
	prefix string
	layout
	localKey string // how Dequeues of this process find each other: the prefix

	dead        *layout // the dead-letter queue's keys; nil without WithDeadLetter
	maxAttempts int
	maxValue    int

	// window is how many keys a Dequeue reads from the head: enough to see
	// past the items in flight, learned from earlier Dequeues.
	window atomic.Int64

	// spread is how many items at the head a Dequeue chooses among: 1 (strict
	// order) unless consumers of other processes compete; see choose.
	spread atomic.Int64

	// lastRev is the newest revision this Queue has seen the server at:
	// what an Enqueue that lost an answer reads history from.
	lastRev   atomic.Int64
	lastRevAt atomic.Int64 // when lastRev was seen, in Unix nanoseconds
}

// New returns the queue named prefix for session s.
//
// It returns lockstep.ErrNilSession for a nil session, an error wrapping the
// session's Err if it already ended, one wrapping lockstep.ErrInvalidPrefix
// for an empty prefix, "/" or one ending in "//" (or a dead-letter prefix that
// overlaps the queue), and one wrapping ErrInvalidOption for an option it
// cannot use.
func New(s *lockstep.Session, prefix string, opts ...Option) (*Queue, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	o := options{maxRequest: DefaultMaxRequestBytes}
	for _, opt := range opts {
		opt(&o)
	}
	q := &Queue{s: s, cli: s.Client(), prefix: prefix, layout: newLayout(prefix), localKey: prefix}
	q.window.Store(minWindow)
	q.spread.Store(1)
	longest := len(q.claims) + idLen
	if o.deadSet {
		if err := checkDeadLetter(prefix, o.deadLetter, o.maxAttempts); err != nil {
			return nil, err
		}
		dl := newLayout(o.deadLetter)
		q.dead, q.maxAttempts = &dl, o.maxAttempts
		longest = max(longest, len(dl.items)+idLen)
	}
	q.maxValue = o.maxRequest - requestAllowance - 4*longest
	if q.maxValue < 0 {
		return nil, fmt.Errorf("%w: max request bytes %d leaves no room for a value", ErrInvalidOption, o.maxRequest)
	}
	return q, nil
}

func checkDeadLetter(prefix, dead string, maxAttempts int) error {
	if err := keys.CheckPrefix(dead); err != nil {
		return fmt.Errorf("queue: dead-letter prefix: %w", err)
	}
	if strings.HasPrefix(keys.Dir(dead), keys.Dir(prefix)) || strings.HasPrefix(keys.Dir(prefix), keys.Dir(dead)) {
		return fmt.Errorf("%w: dead-letter prefix %q overlaps queue %q", lockstep.ErrInvalidPrefix, dead, prefix)
	}
	if maxAttempts < 1 {
		return fmt.Errorf("%w: dead-letter max attempts %d (want at least 1)", ErrInvalidOption, maxAttempts)
	}
	return nil
}

// MaxValueSize is the largest value Enqueue accepts: the server's request
// limit (WithMaxRequestBytes) less an allowance for the keys and framing.
func (q *Queue) MaxValueSize() int { return q.maxValue }

// Enqueue adds value with a priority (WithPriority, default 0) and returns
// its ID. The item is durable: it stays until a consumer acks it, whatever
// happens to this session. Lower priority values are served first; within
// one priority, items are served in the order their Enqueue calls took
// effect, which respects real time: an item enqueued after another's
// Enqueue returned is served after it.
//
// It costs one round trip; a concurrent Enqueue of the same priority can
// cost it one more. It returns ErrInvalidPriority or ErrTooLarge, and an
// error wrapping the session's Err if the session ended, before writing
// anything. Errors that may pass are retried, and a retry finds the item
// an attempt whose answer was lost enqueued, even if it was served and
// acked meanwhile (from etcd's history), so it is not enqueued twice. It
// returns ErrOutcomeUnknown if that history was compacted first.
//
// If it returns another error, the item may or may not have been
// enqueued.
func (q *Queue) Enqueue(ctx context.Context, value string, opts ...EnqueueOption) (string, error) {
	var o enqueueOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPriority(o.priority); err != nil {
		return "", err
	}
	if len(value) > q.maxValue {
		return "", fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(value), q.maxValue)
	}
	if err := q.s.Err(); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	bucket := q.items + encodePriority(o.priority) + "/"
	end := clientv3.GetPrefixRangeEnd(bucket)
	var floor uint64
	for {
		id := newID(o.priority, floor)
		res, err := q.put(ctx, q.items+id, value, end)
		if err != nil {
			return "", q.rpcErr(ctx, "enqueue", err)
		}
		if res == nil || res.Succeeded || len(res.Responses[1].GetResponseRange().Kvs) == 1 {
			return id, nil
		}
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // the key that was in the way is gone already
		}
		last := strings.TrimPrefix(string(kvs[0].Key), q.items)
		if !validID(last) || stampOf(last) == math.MaxUint64 {
			return "", fmt.Errorf("%w: %q under %s: no item can be enqueued after it", ErrMalformed, kvs[0].Key, q.items)
		}
		floor = stampOf(last) + 1
	}
}

// put writes the item key if it sorts after every item of its priority
// still present (end closes the priority's range): then key order is the
// order in which Enqueues took effect, whatever the producers' clocks say.
// If it would not, the Else branch returns the last key, so that the next
// try can go past it, and key itself.
//
// An attempt that went unanswered may have been applied, and its item
// served and acked before the next attempt, which the guard would then let
// through: a second copy. So before each retry put looks in etcd's history
// for the key, and returns a nil response if it finds it.
func (q *Queue) put(ctx context.Context, key, value, end string) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	from, sent, landed := q.recentRev(), false, false
	err := rpc.Do(ctx, q.cli, q.s, func(ctx context.Context) error {
		if sent {
			var err error
			if landed, err = q.written(ctx, key, from); err != nil || landed {
				return err
			}
		}
		if from == 0 { // nothing read lately to date the first attempt by
			now, err := q.cli.Get(ctx, end, clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			from = now.Header.Revision
		}
		sent = true
		var err error
		resp, err = q.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0).WithRange(end)).
			Then(clientv3.OpPut(key, value)).
			Else(clientv3.OpGet(key, clientv3.WithRange(end), clientv3.WithKeysOnly(),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1)),
				clientv3.OpGet(key, clientv3.WithKeysOnly())).
			Commit()
		if err == nil {
			q.saw(resp.Header.Revision)
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
func (q *Queue) written(ctx context.Context, key string, from int64) (bool, error) {
	now, err := q.cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil || now.Count > 0 {
		return now != nil && now.Count > 0, err
	}
	events, compacted, err := history.Between(ctx, q.cli, history.Range{Key: key}, from, now.Header.Revision)
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
func (q *Queue) saw(rev int64) {
	for {
		old := q.lastRev.Load()
		if rev <= old {
			return
		}
		if q.lastRev.CompareAndSwap(old, rev) {
			q.lastRevAt.Store(time.Now().UnixNano())
			return
		}
	}
}

// recentRev is the newest revision seen if it was seen lately, else 0: an
// old one may be compacted by the time history is read from it.
func (q *Queue) recentRev() int64 {
	if time.Since(time.Unix(0, q.lastRevAt.Load())) > time.Minute {
		return 0
	}
	return q.lastRev.Load()
}

// Len returns the number of items in the queue that have not been acked,
// claimed or not. It costs one round trip.
func (q *Queue) Len(ctx context.Context) (int, error) {
	resp, err := rpc.Get(ctx, q.cli, q.s, q.items, clientv3.WithRange(q.itemsEnd), clientv3.WithCountOnly())
	if err != nil {
		return 0, q.rpcErr(ctx, "len", err)
	}
	return int(resp.Count), nil
}

// rpcErr turns the error of an etcd call into the one to return: ctx's error
// if ctx ended, else the error with what failed.
func (q *Queue) rpcErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("queue: %s %s: %w", op, q.prefix, err)
}
