package queue

import (
	"context"
	"fmt"
)

// MaxBatch is the most items EnqueueBatch writes in one transaction:
// etcd's default --max-txn-ops.
const MaxBatch = 128

// putAllowance is what one more put adds to a transaction besides its key
// and value: the protobuf framing of the request op and of the put.
const putAllowance = 16

// EnqueueBatch adds values as items of one priority (WithPriority) in one
// transaction, so all of them are enqueued or none, and returns their IDs
// in the order of values, which is the order they are served in. An empty
// batch writes nothing.
//
// It costs one round trip, as Enqueue does, with the same retries and the
// same check of etcd's history after a lost answer. Before writing
// anything it returns ErrInvalidPriority, or ErrTooLarge for more than
// MaxBatch values, a value larger than MaxValueSize, or a batch whose
// request would exceed the server's limit (WithMaxRequestBytes).
func (p *Producer) EnqueueBatch(ctx context.Context, values []string, opts ...EnqueueOption) ([]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	return p.enqueue(ctx, "enqueue batch", values, opts)
}

// checkSize returns ErrTooLarge if values cannot be written, or one of them
// moved to a dead-letter queue, in a request the server accepts.
func (p *Producer) checkSize(values []string) error {
	if len(values) > MaxBatch {
		return fmt.Errorf("%w: a batch of %d items (at most %d)", ErrTooLarge, len(values), MaxBatch)
	}
	total := requestAllowance
	for i, v := range values {
		if len(v) > p.maxValue {
			if len(values) == 1 {
				return fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(v), p.maxValue)
			}
			return fmt.Errorf("%w: item %d: %d bytes (at most %d)", ErrTooLarge, i, len(v), p.maxValue)
		}
		total += len(p.items) + idLen + len(v) + putAllowance
	}
	if total > p.maxRequest {
		return fmt.Errorf("%w: a batch of %d items needs about %d bytes (the server takes %d in a request)", ErrTooLarge, len(values), total, p.maxRequest)
	}
	return nil
}
