package queue

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
)

// A Dequeue must leave nothing behind: a claim whose outcome it does not
// know, its place in the waiting line. The writes that remove them are
// guarded and idempotent, and must not be given up after one failure: a
// claim left by a live session would hide its item until the session ends,
// and a place left in line would stall every consumer behind it. So they
// are retried with backoff until their deadline, and those that still fail
// (the cluster has no leader for longer than that) are kept and retried by
// the next Dequeue of the queue.

// cleanupTxn is one guarded cleanup: if cmp holds, then; else otherwise.
type cleanupTxn struct {
	cmp       clientv3.Cmp
	then      []clientv3.Op
	otherwise []clientv3.Op
}

// cleanUp runs c until it succeeds or ctx ends; if it never succeeds it is
// kept for the next Dequeue.
func (q *Queue) cleanUp(ctx context.Context, c cleanupTxn) {
	if !q.tryCleanup(ctx, c) {
		q.pendingMu.Lock()
		q.pendingCleanups = append(q.pendingCleanups, c)
		q.pendingMu.Unlock()
	}
}

func (q *Queue) tryCleanup(ctx context.Context, c cleanupTxn) bool {
	for attempt := 0; ; attempt++ {
		_, err := q.cli.Txn(ctx).If(c.cmp).Then(c.then...).Else(c.otherwise...).Commit()
		switch {
		case err == nil:
			return true
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return true // the lease is gone, and every key it held with it
		case !retry.Transient(err):
			return false
		}
		if retry.Sleep(ctx, attempt) != nil {
			return false
		}
	}
}

// retryCleanups runs the cleanups earlier calls could not finish, for at
// most cleanupTimeout.
func (q *Queue) retryCleanups(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	q.pendingMu.Lock()
	cs := q.pendingCleanups
	q.pendingCleanups = nil
	q.pendingMu.Unlock()
	for _, c := range cs {
		q.cleanUp(ctx, c)
	}
}
