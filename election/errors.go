package election

import "errors"

var (
	// ErrNotLeader is returned by Proclaim when the term has ended. The
	// error also wraps the reason (lockstep.ErrReleased, ErrSessionLost,
	// ErrLost, ...).
	ErrNotLeader = errors.New("election: not leader")

	// ErrNoLeader is returned by Leader when no candidate holds the
	// election.
	ErrNoLeader = errors.New("election: no leader")
)
