package cache

import "errors"

// Errors of package cache. Besides these, Open and Err return
// lockstep.ErrNilClient, lockstep.ErrInvalidPrefix, and etcd's own errors
// when etcd refuses the cache (permission denied, wrapped).
var (
	// ErrClosed is returned by the calls of a Cache after Close.
	ErrClosed = errors.New("cache: closed")
)

// ErrInvalidOption is returned by Open for an option it cannot use.
var ErrInvalidOption = errors.New("cache: invalid option")
