package semaphore

import (
	"context"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
)

var _ lockstep.Ownership = (*Permit)(nil)

// Permit is one held permit of a Semaphore. It implements
// lockstep.Ownership: Done closes and Err says why when the permit ends
// (released, session lost or closed, key deleted by someone else); Token is
// the create revision of the permit's key; IsOwner fences writes to etcd.
type Permit struct {
	lockstep.Ownership // served by h
	h                  *own.Handle
}

// Release gives the permit back in one transaction guarded by the permit's
// revision, so it never deletes a key it does not own. Releasing twice
// returns lockstep.ErrReleased; releasing a permit that was already lost
// returns the reason it was lost. The permit is given back whatever
// Release returns: a delete that cannot get through (ctx ended, etcd
// unreachable) goes on under a short timeout of its own and then through
// the session.
func (p *Permit) Release(ctx context.Context) error {
	return p.h.Release(ctx)
}

// Session returns the session the permit belongs to.
func (p *Permit) Session() *lockstep.Session { return p.h.Session() }
