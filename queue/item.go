package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
)

var _ lockstep.Ownership = (*Item)(nil)

// Item is one delivery of a queued item: a claim, attached to the
// consumer's session, that keeps every other consumer from receiving the
// item until it ends. It implements lockstep.Ownership: Done closes when
// the claim ends (Ack, Nack, session lost or closed, claim key deleted),
// Token is the claim's create revision, and IsOwner guards writes to etcd
// that must happen only while the claim holds.
//
// Delivery is at least once: if the claim ends before Ack, the item is
// delivered again, possibly while this consumer is still working on it.
// Make the work idempotent (the ID identifies the item across deliveries),
// or fence it with IsOwner or Token.
type Item struct {
	lockstep.Ownership // served by h
	h                  *own.Handle
	q                  *Queue
	loc                *local
	id                 string
	key                string
	value              string
	priority           int
	attempts           int

	// removing is set while an Ack or a dead-letter Nack is in flight: if
	// the claim ends then, the item is gone rather than free again.
	removing atomic.Bool
}

// ID returns the item's ID, the same on every delivery and unique among all
// items ever enqueued: use it to recognise a redelivery.
func (it *Item) ID() string { return it.id }

// Value returns the item's value.
func (it *Item) Value() string { return it.value }

// Priority returns the priority the item was enqueued with.
func (it *Item) Priority() int { return it.priority }

// Attempts returns how many times the item has been delivered, this
// delivery included: 1 the first time. It is stored with the item and
// counted when a claim is made, so a consumer that crashed still counts.
func (it *Item) Attempts() int { return it.attempts }

// Ack removes the item for good and ends the claim, in one transaction
// guarded by the claim: a consumer whose claim ended (and whose item may
// have gone to someone else) removes nothing. It costs one round trip.
//
// It returns nil on success; an error wrapping ErrClaimLost and the reason
// if the claim had ended (the item was or will be delivered again);
// lockstep.ErrReleased if this Item was already acked or nacked; ctx's error
// if ctx ended, in which case the Ack may or may not have taken effect and
// a retry is safe (it then returns ErrClaimLost if the first had).
func (it *Item) Ack(ctx context.Context) error {
	it.removing.Store(true)
	err := it.h.Release(ctx, clientv3.OpDelete(it.key))
	if err != nil {
		it.removing.Store(false)
		it.loc.wake() // if the item is free again, local waiters look
	}
	return it.claimErr("ack", err)
}

// Nack gives the item back now, in its place in the queue, for another
// delivery; with WithDeadLetter, an item that has had its last allowed
// delivery goes to the dead-letter queue instead. Like Ack it is guarded by
// the claim and costs one round trip, and it returns the same errors.
func (it *Item) Nack(ctx context.Context) error {
	q := it.q
	if q.dead == nil || it.attempts < q.maxAttempts {
		return it.claimErr("nack", it.h.Release(ctx))
	}
	it.removing.Store(true)
	err := it.h.Release(ctx, clientv3.OpDelete(it.key), clientv3.OpPut(q.dead.items+it.id, it.value))
	if err != nil {
		it.removing.Store(false)
		it.loc.wake()
	}
	return it.claimErr("nack", err)
}

// ended runs once when the claim ends, however it ends. Unless the item
// was removed, it is free again: wake the waiting Dequeues of this process
// that skipped it as busy (others learn from etcd).
func (it *Item) ended() {
	it.loc.unmark(it.key, !it.removing.Load())
	it.loc.release(it.q.localKey)
}

func (it *Item) claimErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lockstep.ErrLost), errors.Is(err, lockstep.ErrSessionLost), errors.Is(err, lockstep.ErrSessionClosed):
		return fmt.Errorf("%w: %s item %s: %w", ErrClaimLost, op, it.id, err)
	case errors.Is(err, lockstep.ErrReleased), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("queue: %s item %s: %w", op, it.id, err)
}

// Session returns the session the claim belongs to.
func (it *Item) Session() *lockstep.Session { return it.h.Session() }
