package mutex

import (
	"context"
	"fmt"

	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// waitPred blocks until the predecessor found at at is deleted, ctx ends,
// or our own ownership ends (session lost or closed, key deleted).
//
// The watch starts at the revision after the read that found the
// predecessor. When nothing was written since, etcd registers it as
// current and delivers the delete as soon as it commits.
func (m *Mutex) waitPred(ctx context.Context, h *own.Handle, at place) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan error, 1)
	go func() {
		gone <- waitfor.Gone(wctx, m.s.Client(), string(at.pred.Key), at.pred.CreateRevision, at.rev+1)
	}()
	select {
	case err := <-gone:
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	case <-h.Done():
		cancel()
		<-gone
		return fmt.Errorf("mutex: lock %s: %w", m.prefix, h.Err())
	}
}
