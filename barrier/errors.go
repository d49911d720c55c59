package barrier

import "errors"

// Errors of the barrier package. Match them with errors.Is; they are wrapped
// with detail (which key, which counts). The package also returns the
// shared lockstep errors: ErrNilClient, ErrNilSession, ErrInvalidPrefix,
// ErrSessionLost, ErrSessionClosed and ErrLost.
var (
	// ErrHeld is returned by Hold when the barrier is already held.
	ErrHeld = errors.New("barrier: already held")

	// ErrInvalidCount is returned by NewDouble for a count that is not
	// between 1 and MaxCount.
	ErrInvalidCount = errors.New("barrier: invalid count")

	// ErrCountMismatch is returned by Enter when this participant's count
	// differs from the count of a participant that registered before it, or
	// of the round that is open.
	ErrCountMismatch = errors.New("barrier: participants disagree on the count")

	// ErrEntered is returned by Enter when the participant has entered a
	// round and not left it yet.
	ErrEntered = errors.New("barrier: already entered")

	// ErrNotEntered is returned by Leave when the participant has not
	// entered a round.
	ErrNotEntered = errors.New("barrier: not entered")

	// ErrMalformed is returned when a key under the barrier's prefix does
	// not hold what this package writes there: something else uses the
	// prefix.
	ErrMalformed = errors.New("barrier: malformed key")
)
