package leaderjob

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff returns the pause after the n-th failure in a row (n >= 1): a
// random duration between half and all of min(max, min·2ⁿ⁻¹), so that
// runners that failed together do not campaign again together.
func (o *options) backoff(n int) time.Duration {
	d := o.backoffMax
	if n < 1 {
		n = 1
	}
	if n <= 32 {
		if step := o.backoffMin << (n - 1); step > 0 && step < d {
			d = step
		}
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d, or until ctx ends or stop closes; it reports whether the
// whole pause passed.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}
