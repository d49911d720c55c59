// Package retry has the one backoff every retry loop in lockstep uses:
// exponential with jitter, bounded, and cancelled by ctx.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	base = 10 * time.Millisecond
	cap_ = time.Second
)

// Delay returns the wait before retry number attempt (0-based): a random
// duration between half and all of min(1s, 10ms * 2^attempt), so that many
// clients that failed together do not retry together.
func Delay(attempt int) time.Duration {
	d := cap_
	if attempt < 7 {
		d = min(cap_, base<<attempt)
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits Delay(attempt) or until ctx ends, and returns ctx's error in
// that case.
func Sleep(ctx context.Context, attempt int) error {
	t := time.NewTimer(Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
