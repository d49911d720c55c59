package mutex

import (
	"context"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
)

var _ lockstep.Ownership = (*Lock)(nil)

// Lock is a held mutex. It implements lockstep.Ownership:
//
//   - Done is closed when the lock ends: unlocked, session lost or closed
//     (before the server can expire the lease), or its key deleted by
//     someone else; Err says which (lockstep.ErrReleased,
//     lockstep.ErrSessionLost, lockstep.ErrSessionClosed, lockstep.ErrLost).
//   - Token is the fencing token, the create revision of the lock's key:
//     strictly increasing across successive holders of the mutex.
//   - Key is the lock's key: the prefix, "/", and the session's lease in hex.
//   - IsOwner is a comparison that holds in an etcd Txn only while this
//     lock is held: cli.Txn(ctx).If(l.IsOwner()).Then(...).
//
// The watch behind Done and Err starts the first time either is called,
// from the revision the lock began at, so a holder that never asks pays for
// no watch and one that asks late still learns of an earlier loss.
//
// A lock can be lost at any moment without this process knowing yet. Fence
// writes with IsOwner (etcd) or Token (anything else); see the package
// documentation.
type Lock struct {
	// Ownership is the contract, served by h.
	lockstep.Ownership
	h *own.Handle
}

// Unlock releases the lock in one round trip. The delete is guarded by the
// lock's create revision, so a late or repeated Unlock never deletes a
// newer holder's key.
//
// Unlock returns lockstep.ErrReleased if the lock was already unlocked,
// and the reason if it was lost (lockstep.ErrLost, lockstep.ErrSessionLost,
// lockstep.ErrSessionClosed). If ctx ends first, Unlock returns ctx's error
// but still deletes the key under its own short timeout, so that the next
// waiter need not wait for the lease to expire; Err then reports
// lockstep.ErrReleased (or lockstep.ErrLost if the first attempt reached
// etcd but its answer did not reach us). Any other error leaves the lock
// held: call Unlock again, or close the session.
func (l *Lock) Unlock(ctx context.Context) error {
	err := l.h.Release(ctx)
	if err == nil || ctx.Err() == nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	l.h.Release(cctx) // a no-op if the lock already ended
	return err
}

// Session returns the session the lock belongs to.
func (l *Lock) Session() *lockstep.Session { return l.h.Session() }
