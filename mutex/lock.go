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
// newer holder's key. Errors that may pass are retried while ctx and the
// session live.
//
// After Unlock the lock is given up, whatever it returns: if the delete
// cannot get through (ctx ended first, etcd unreachable), it goes on under
// a short timeout of its own and then through the session, which keeps
// trying until it succeeds or the session ends; the error says why it did
// not finish in the call (ctx's error, or etcd's). Unlock returns
// lockstep.ErrReleased if the lock was already unlocked, and the reason if
// it was lost (lockstep.ErrLost, lockstep.ErrSessionLost,
// lockstep.ErrSessionClosed).
func (l *Lock) Unlock(ctx context.Context) error { return l.h.Release(ctx) }

// Session returns the session the lock belongs to.
func (l *Lock) Session() *lockstep.Session { return l.h.Session() }
