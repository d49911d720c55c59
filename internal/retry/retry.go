// Package retry has the one backoff and the timeouts every lockstep
// package uses when it talks to etcd: exponential with jitter, bounded,
// and cancelled by ctx. It knows nothing of sessions; package rpc builds
// the retry loop on it.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	// AttemptTimeout bounds one attempt of a request. A member cut off from
	// its peers holds a request until its own timeout (about 7 s); the next
	// attempt goes to another member. A healthy request takes milliseconds.
	AttemptTimeout = 2 * time.Second

	// CleanupTimeout bounds a cleanup that runs after the caller's ctx has
	// ended (a cancelled wait's key, an unlock after a failed job, a
	// session's revoke). What it cannot finish in that time is left to the
	// session, which goes on trying (see lockstep.Session).
	CleanupTimeout = 5 * time.Second
)

// Backoff is exponential backoff with jitter: retry number n (0-based)
// waits a random duration between half and all of min(Max, Base·2ⁿ), so
// that many clients that failed together do not retry together.
type Backoff struct {
	Base, Max time.Duration
}

// Default is the backoff of requests to etcd: 10 ms doubling to 1 s.
var Default = Backoff{Base: 10 * time.Millisecond, Max: time.Second}

// Delay returns the wait before retry number attempt.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Max
	if attempt < 32 {
		if step := b.Base << max(attempt, 0); step > 0 && step < d {
			d = step
		}
	}
	return Jitter(d)
}

// Jitter returns a random duration between half and all of d.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Delay is Default.Delay.
func Delay(attempt int) time.Duration { return Default.Delay(attempt) }

// Sleep waits Delay(attempt) or until ctx ends, and returns ctx's error in
// that case.
func Sleep(ctx context.Context, attempt int) error {
	if !Pause(ctx, Delay(attempt), nil) {
		return ctx.Err()
	}
	return nil
}

// Pause waits d, or until ctx ends or stop closes; it reports whether the
// whole pause passed.
func Pause(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
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
