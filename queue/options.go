package queue

import "fmt"

// DefaultMaxRequestBytes is etcd's default --max-request-bytes (1.5 MiB):
// the largest request a server accepts unless configured otherwise.
const DefaultMaxRequestBytes = 3 << 19

// Option configures New.
type Option func(*options)

type options struct {
	deadSet     bool // WithDeadLetter was given
	deadLetter  string
	maxAttempts int
	maxRequest  int
}

// WithDeadLetter moves an item that has been delivered maxAttempts times
// without an Ack to the queue named prefix, instead of delivering it again.
// A delivery fails when the consumer Nacks it or loses its claim (its
// session ends) before Ack. The move happens in the Nack of the last allowed
// delivery, or, if that consumer died, when a Dequeue next finds the item.
//
// The dead-letter queue is an ordinary queue: read it with New(s, prefix).
// Items keep their ID, priority and value there; their attempt count starts
// again from zero. prefix must be a valid prefix that neither contains the
// queue's keys nor lies inside them, and maxAttempts must be at least 1, or
// New returns an error.
func WithDeadLetter(prefix string, maxAttempts int) Option {
	return func(o *options) {
		o.deadSet = true
		o.deadLetter = prefix
		o.maxAttempts = maxAttempts
	}
}

// WithMaxRequestBytes tells the queue the server's --max-request-bytes, so
// that Enqueue refuses values the server would refuse (ErrTooLarge) before
// writing anything. Default DefaultMaxRequestBytes, etcd's default.
func WithMaxRequestBytes(n int) Option {
	return func(o *options) { o.maxRequest = n }
}

// EnqueueOption configures one Enqueue.
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	priority int
}

// WithPriority sets the item's priority. Lower values are served first;
// negative values are allowed. It must lie in [MinPriority, MaxPriority],
// or Enqueue returns ErrInvalidPriority. Default 0.
func WithPriority(p int) EnqueueOption {
	return func(o *enqueueOptions) { o.priority = p }
}

func checkPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return fmt.Errorf("%w: %d (want %d..%d)", ErrInvalidPriority, p, MinPriority, MaxPriority)
	}
	return nil
}
