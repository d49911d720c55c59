// Package ctxs makes contexts that end with an ownership: the one way
// lockstep stops an RPC or a caller's function when a session, a lock or a
// term ends.
package ctxs

import "context"

// EndWith returns a context that ends when ctx ends or done closes, and a
// stop function that ends it and waits for the goroutine that watches
// done. The caller must call stop; it may call it more than once. If cause
// is not nil, a context ended by done has cause() as its cause
// (context.Cause).
func EndWith(ctx context.Context, done <-chan struct{}, cause func() error) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-done:
			var err error
			if cause != nil {
				err = cause()
			}
			cancel(err)
		case <-cctx.Done():
		}
	}()
	return cctx, func() {
		cancel(nil)
		<-exited
	}
}
