package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/waitfor"
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
	claimedAt          int64 // the first revision after the claim

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
// have gone to someone else) removes nothing. It costs one round trip;
// errors that may pass are retried, and a retry that finds the claim gone
// after an attempt whose answer was lost learns from etcd's history
// whether that attempt removed the item.
//
// It returns nil on success; an error wrapping ErrClaimLost and the reason
// if the claim had ended (the item was or will be delivered again); an
// error wrapping the session's Err, but not ErrClaimLost, if the session
// ended while an attempt's answer was lost (the item may be gone);
// lockstep.ErrReleased if this Item was already acked or nacked; ctx's error
// if ctx ended, in which case the Ack may or may not have taken effect and
// a retry is safe (it then returns ErrClaimLost if the first had).
func (it *Item) Ack(ctx context.Context) error {
	return it.remove(ctx, "ack", nil)
}

// Nack gives the item back now, in its place in the queue, for another
// delivery; with WithDeadLetter, an item that has had its last allowed
// delivery goes to the dead-letter queue instead. Like Ack it is guarded by
// the claim and costs one round trip, and it returns the same errors. A
// Nack that gives the item back and cannot get through gives it back all
// the same: the session deletes the claim once it can. A Nack to the
// dead-letter queue that fails leaves the claim, like a failed Ack.
func (it *Item) Nack(ctx context.Context) error {
	q := it.q
	if q.dead == nil || it.attempts < q.maxAttempts {
		return it.claimErr("nack", it.h.Release(ctx))
	}
	return it.remove(ctx, "nack", []clientv3.Op{clientv3.OpPut(q.dead.items+it.id, it.value)})
}

// remove deletes the item with its claim, and commits then with them.
func (it *Item) remove(ctx context.Context, op string, then []clientv3.Op) error {
	it.removing.Store(true)
	res, err := it.h.ReleaseWith(ctx, rpc.Txn{
		If:   []clientv3.Cmp{it.h.IsOwner()},
		Then: append([]clientv3.Op{clientv3.OpDelete(it.h.Key()), clientv3.OpDelete(it.key)}, then...),
	}, it.removedTogether)
	if err != nil && res.Retried && it.h.Session().Err() != nil {
		// The session ended while an attempt's answer was lost: that
		// attempt may have removed the item, or may still.
		if it.removedTogether() {
			return nil
		}
		return fmt.Errorf("queue: %s item %s: an attempt whose answer was lost may have taken effect: %w", op, it.id, err)
	}
	if err != nil {
		it.removing.Store(false)
		it.loc.wake() // if the item is free again, local waiters look
	}
	return it.claimErr(op, err)
}

// removedTogether tells, after a remove whose answer was lost found the
// claim gone, whether that remove did it: only it deletes this claim and
// the item in one revision. (The claim's lease ending deletes the claim
// alone; another consumer's Ack deletes its own claim.) It reads the two
// deletes from etcd's history; if that was compacted, it cannot tell and
// says no.
func (it *Item) removedTogether() bool {
	ctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
	defer cancel()
	cli := it.q.cli
	claimGone, err := waitfor.GoneAt(ctx, cli, it.h.Key(), it.h.Token(), it.claimedAt)
	if err != nil || claimGone == 0 {
		return false
	}
	resp, err := cli.Get(ctx, it.key, clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 0 {
		return false
	}
	itemGone, err := waitfor.GoneAt(ctx, cli, it.key, 0, it.claimedAt)
	return err == nil && itemGone == claimGone
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
