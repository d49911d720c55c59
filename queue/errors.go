package queue

import "errors"

// Errors of package queue. Match them with errors.Is. Besides these, an Item
// whose claim ended reports the shared reasons of package lockstep:
// lockstep.ErrReleased (it was acked or nacked), lockstep.ErrLost (its claim
// key was deleted by someone else), lockstep.ErrSessionLost and
// lockstep.ErrSessionClosed.
var (
	// ErrTooLarge is returned by Enqueue, before anything is written, for a
	// value that would make a request larger than the server accepts (see
	// WithMaxRequestBytes and Producer.MaxValueSize).
	ErrTooLarge = errors.New("queue: value too large")

	// ErrInvalidPriority is returned by Enqueue, before anything is written,
	// for a priority outside [MinPriority, MaxPriority].
	ErrInvalidPriority = errors.New("queue: invalid priority")

	// ErrInvalidOption is returned by New and NewProducer for an option with a value it
	// cannot use (a dead-letter limit under 1, a request limit too small to
	// hold a key).
	ErrInvalidOption = errors.New("queue: invalid option")

	// ErrMalformed is returned by Enqueue when a key under the queue's
	// items that Enqueue did not write (a hand-made one, with the largest
	// stamp there is) leaves no room after it.
	ErrMalformed = errors.New("queue: malformed key")

	// ErrClaimLost is returned by Ack and Nack when the claim ended before
	// the call took effect: the session was lost or closed, or the claim key
	// was deleted. The call changed nothing: the item is delivered again (or
	// already was), unless an earlier try of the same Ack, whose reply was
	// lost, removed it. The error also wraps the reason the claim ended.
	ErrClaimLost = errors.New("queue: claim lost")

	// ErrNotFound is returned by Get and Remove for an ID that is not in
	// the queue, and by Peek when no item is waiting for a consumer.
	ErrNotFound = errors.New("queue: item not found")

	// ErrClaimed is returned by Move for an item a consumer holds: move it
	// once the claim has ended.
	ErrClaimed = errors.New("queue: item claimed")

	// ErrInvalidID is returned by Get and Remove, before any I/O, for a
	// string that is not an item ID as Enqueue returns them.
	ErrInvalidID = errors.New("queue: invalid item ID")

	// ErrOutcomeUnknown is returned by Enqueue when an attempt went
	// unanswered and etcd's history, compacted since, no longer tells
	// whether it was applied: the item may or may not be in the queue.
	ErrOutcomeUnknown = errors.New("queue: outcome of an unanswered enqueue unknown")
)
