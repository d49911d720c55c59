// Package queue is a durable priority work queue over etcd, delivered at
// least once: an item stays in etcd until a consumer acks it, and a consumer
// that crashes before Ack gives its item back when its session ends.
//
//	q, err := queue.New(s, "/queue/jobs")
//	id, err := q.Enqueue(ctx, "resize img-1", queue.WithPriority(-5))
//
//	it, err := q.Dequeue(ctx) // blocks; the item is claimed under s
//	if err := work(it.Value()); err != nil {
//		it.Nack(ctx) // give it back now
//	} else {
//		it.Ack(ctx) // done: removed for good
//	}
//
// What it guarantees:
//
//   - No lost items. Enqueue writes the item without a lease; only Ack, or a
//     move to the dead-letter queue (WithDeadLetter), removes it.
//   - One live delivery at a time. Dequeue claims an item with a key under
//     the consumer's lease, created only if none exists; nobody else
//     receives the item while the claim lives. The claim ends with Ack,
//     Nack, or the consumer's session (crash, partition, Close), and then the
//     item is delivered again with Attempts one higher.
//   - Guarded Ack. Ack deletes the item and the claim in one transaction
//     that holds only while this claim does: a consumer that lost its claim
//     cannot remove an item someone else is now working on, and at most one
//     Ack of an item ever succeeds.
//   - Order. Lower priority values are served first; within one priority,
//     items are served in the order their Enqueues took effect, which
//     respects real time whatever the producers' clocks say. A goroutine
//     that calls Dequeue in a loop receives the first deliveries of one
//     priority in that order, and never an item while a more urgent one
//     enqueued before its Dequeue began is left for later; the exceptions
//     are below. A Nacked or reclaimed item keeps its place, so it is
//     served again before younger items.
//   - Many consumers do not fight over the head. Dequeues in one process
//     pick different items without asking etcd; consumers in different
//     processes that lose a race spread over the first few items. A new
//     item wakes one waiting consumer, not all of them.
//
// What it does not guarantee:
//
//   - Exactly-once processing. A consumer can lose its claim (its session
//     expired while it was paused or cut off) and keep working while the
//     item is delivered to someone else. Make the work idempotent, keyed by
//     ID, or fence it: writes to etcd with cli.Txn(ctx).If(it.IsOwner()),
//     writes elsewhere carrying it.Token().
//   - Global order across consumers. Items are claimed in order, but
//     consumers work concurrently and finish in any order; a redelivered
//     item arrives after younger ones that were claimed meanwhile.
//   - Order as one consumer sees it, when consumers in other processes
//     compete for the same items (a Dequeue that loses races to them picks
//     at random among the first few), or when a Dequeue of this process
//     fails while claiming an item another one skipped as busy.
//   - Exact attempt counts: a Dequeue whose ctx ends while its claim is in
//     flight may count a delivery nobody received.
//
// Reads of the head of the queue cost the server a visit to each key
// deleted since the last compaction; run etcd with automatic compaction.
// docs/queue.md has the key layout, the round trips of each operation and
// the failure behaviour.
package queue
