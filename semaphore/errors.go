package semaphore

import "errors"

// Errors of package semaphore. The shared ones (lockstep.ErrNilSession,
// lockstep.ErrInvalidPrefix, lockstep.ErrSessionLost, lockstep.ErrReleased,
// ...) come from package lockstep; match all of them with errors.Is.
var (
	// ErrNoPermit is returned by TryAcquire when every permit is held or
	// other clients are already waiting for one.
	ErrNoPermit = errors.New("semaphore: no permit available")

	// ErrLimitMismatch is returned when a key under the prefix records a
	// different limit than this Semaphore's: two clients disagree on how
	// many permits the semaphore has. No permit is granted while they do.
	ErrLimitMismatch = errors.New("semaphore: limit mismatch")

	// ErrInvalidLimit is returned by New for a limit that is not between 1
	// and math.MaxInt32.
	ErrInvalidLimit = errors.New("semaphore: invalid limit")
)
