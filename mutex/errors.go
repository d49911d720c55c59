package mutex

import "errors"

// Errors of package mutex. Match them with errors.Is. Besides these, a Lock
// whose ownership ended reports the shared reasons of package lockstep:
// lockstep.ErrReleased (it was unlocked), lockstep.ErrLost (its key was
// deleted by someone else), lockstep.ErrSessionLost and
// lockstep.ErrSessionClosed.
var (
	// ErrLocked is returned by TryLock when the mutex is held, or waited
	// for, by another session or by another goroutine of the same session.
	ErrLocked = errors.New("mutex: locked by another holder")

	// ErrNotLocked is returned by Holder when nobody holds the mutex.
	ErrNotLocked = errors.New("mutex: not locked")
)
