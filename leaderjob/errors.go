package leaderjob

import "errors"

var (
	// ErrNilJob is returned by New for a nil job.
	ErrNilJob = errors.New("leaderjob: nil job")

	// ErrInvalidIdentity is returned by New for an empty identity.
	ErrInvalidIdentity = errors.New("leaderjob: invalid identity")

	// ErrInvalidBackoff is returned by New for a back-off whose minimum is
	// not positive or whose maximum is below its minimum.
	ErrInvalidBackoff = errors.New("leaderjob: invalid backoff")

	// ErrInvalidPolicy is returned by New for a Policy that is not one of
	// the declared values.
	ErrInvalidPolicy = errors.New("leaderjob: invalid policy")

	// ErrInvalidSettle is returned by New for a negative settle delay.
	ErrInvalidSettle = errors.New("leaderjob: invalid settle delay")

	// ErrRunning is returned by Run when another Run of the same Runner is
	// in progress.
	ErrRunning = errors.New("leaderjob: already running")
)
