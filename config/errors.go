package config

import "errors"

// Errors of package config. Match them with errors.Is; they are wrapped
// with detail (which key, which revision, the decoder's or validator's
// own error).
var (
	// ErrDecode says a version could not be decoded: its key is missing or
	// does not hold a document of the decoder's format and type.
	ErrDecode = errors.New("config: cannot decode")

	// ErrInvalid says a decoded version failed the validator.
	ErrInvalid = errors.New("config: invalid")

	// ErrConflict is returned by Put with IfRevision when the key was
	// written after that revision, and by Rollback when the prefix changed
	// while it was being rolled back.
	ErrConflict = errors.New("config: written since")

	// ErrCompacted is returned by Rollback for a revision etcd has
	// compacted away: the prefix as it was then is no longer known.
	ErrCompacted = errors.New("config: revision compacted")

	// ErrTooLarge is returned by Rollback when the prefix has more keys
	// than one etcd transaction may touch (128 by default).
	ErrTooLarge = errors.New("config: too many keys for one transaction")

	// ErrInvalidArgument is returned, before any I/O, for an argument the
	// call cannot use: a nil decoder, an empty key, n < 1.
	ErrInvalidArgument = errors.New("config: invalid argument")

	// ErrClosed is returned after Close.
	ErrClosed = errors.New("config: closed")
)
