package queue

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
)

// Queue is a durable priority work queue named by a key prefix, used
// through one session: items it claims are attached to that session's
// lease. It is a Producer too (Enqueue, Len), bound to the same session.
// New does no I/O. A Queue is safe for concurrent use; its goroutines, and
// those of other Queues with the same prefix in this process, pick
// different items instead of racing for the same one.
type Queue struct {
	Producer
	localKey string // how Dequeues of this process find each other: the prefix

	dead        *layout // the dead-letter queue's keys; nil without WithDeadLetter
	maxAttempts int

	// window is how many keys a Dequeue reads from the head: enough to see
	// past the items in flight, learned from earlier Dequeues.
	window atomic.Int64

	// spread is how many items at the head a Dequeue chooses among: 1 (strict
	// order) unless consumers of other processes compete; see choose.
	spread atomic.Int64
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
	q := &Queue{localKey: prefix}
	o, err := q.init(s.Client(), s, prefix, opts)
	if err != nil {
		return nil, err
	}
	if o.deadSet {
		dl := newLayout(o.deadLetter)
		q.dead, q.maxAttempts = &dl, o.maxAttempts
	}
	q.window.Store(minWindow)
	q.spread.Store(1)
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
