package barrier

import (
	"context"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
)

var _ lockstep.Ownership = (*Hold)(nil)

// Hold is a held barrier. It implements lockstep.Ownership: Done closes
// and Err says why when the hold ends (released, its session lost or
// closed, or its key deleted by someone else: an operator's Release);
// Token is the create revision of the barrier's key; IsOwner fences writes
// to etcd. A hold made without WithSession has no lease: it ends only when
// released or deleted.
type Hold struct {
	lockstep.Ownership // served by h
	h                  *own.Handle
}

func (b *Barrier) newHold(rev, fromRev int64) *Hold {
	var h *own.Handle
	if b.s != nil {
		h = own.New(b.s, b.key, rev, fromRev, nil)
	} else {
		h = own.Unleased(b.cli, b.key, rev, fromRev)
	}
	return &Hold{Ownership: h, h: h}
}

// Release opens the barrier if this hold still holds it, in one
// transaction guarded by the hold's revision: it never opens a hold someone
// else took since. Errors that may pass are retried; a release that
// cannot get through finishes under a short timeout of its own, and then
// through the session, if the hold has one. Releasing twice returns
// lockstep.ErrReleased; releasing a hold that was lost returns the reason.
func (h *Hold) Release(ctx context.Context) error { return h.h.Release(ctx) }
