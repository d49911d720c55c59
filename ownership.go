package lockstep

import clientv3 "go.etcd.io/etcd/client/v3"

// Ownership is the contract every ownership handle implements: a held
// mutex.Lock, a semaphore.Permit, an election.Term, a queue.Item, a
// barrier.Hold.
//
// Ownership is represented by one etcd key attached to the session's lease
// (a barrier.Hold made without a session has no lease).
// It ends when its owner releases it, when the session is lost or closed, or
// when someone else deletes the key. A handle learns of the last case from a
// watch, so there is a delay between the deletion and Done; IsOwner has no
// such delay, which is why writes must be fenced with it.
type Ownership interface {
	// Done is closed when ownership ends. For session loss it closes before
	// the server can expire the lease (see Session).
	Done() <-chan struct{}

	// Err is nil while ownership holds, then says why it ended:
	// ErrReleased, ErrSessionLost, ErrSessionClosed or ErrLost.
	Err() error

	// Token is the fencing token: the etcd revision at which the ownership
	// key was created. Successive owners of the same name get strictly
	// increasing tokens; a resource that remembers the highest token it has
	// seen can reject a stale owner.
	Token() int64

	// Key is the etcd key that represents this ownership.
	Key() string

	// IsOwner is a comparison for an etcd Txn that holds only while this
	// ownership holds: cli.Txn(ctx).If(h.IsOwner()).Then(...).
	IsOwner() clientv3.Cmp
}
