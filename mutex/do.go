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
// l.IsOwner or l.Token. The unlock runs however fn ends, a panic included
// (the panic goes on up after it), and never leaves the key behind (see
// Lock.Unlock).
//
// Do returns Lock's error if it could not lock, otherwise fn's error, joined
// with the reason the lock was lost if it was lost, or with ctx's error if
// ctx ended before the unlock got through. A nil result means fn succeeded
// and the lock was held from Lock to Unlock without interruption. fn may
// unlock l itself.
func (m *Mutex) Do(ctx context.Context, fn func(ctx context.Context, l *Lock) error) (err error) {
	l, err := m.Lock(ctx)
	if err != nil {
		return err
	}
	fctx, stop := ctxs.EndWith(ctx, l.Done(), l.Err)
	defer func() {
		stop()
		uerr := l.Unlock(ctx)
		if errors.Is(uerr, lockstep.ErrReleased) {
			uerr = nil // fn unlocked it
		}
		if uerr != nil && !errors.Is(err, uerr) {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(fctx, l)
}
