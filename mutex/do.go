package mutex

import (
	"context"
	"errors"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/ctxs"
)

// Do locks the mutex, runs fn while holding it, and unlocks it.
//
// fn's ctx is cancelled when the lock is lost (context.Cause says why) or
// when Do's ctx ends; fn should stop promptly and fence its writes with
// l.IsOwner or l.Token. The unlock runs under its own short timeout even if
// ctx has ended.
//
// Do returns Lock's error if it could not lock, otherwise fn's error, joined
// with the reason the lock was lost if it was lost. A nil result means fn
// succeeded and the lock was held from Lock to Unlock without interruption.
// fn may unlock l itself.
func (m *Mutex) Do(ctx context.Context, fn func(ctx context.Context, l *Lock) error) error {
	l, err := m.Lock(ctx)
	if err != nil {
		return err
	}
	fctx, stop := ctxs.EndWith(ctx, l.Done(), l.Err)
	ferr := fn(fctx, l)
	stop()

	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer ucancel()
	uerr := l.Unlock(uctx)
	if errors.Is(uerr, lockstep.ErrReleased) {
		uerr = nil // fn unlocked it
	}
	return errors.Join(ferr, uerr)
}
