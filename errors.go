package lockstep

import "errors"

// Errors shared by every lockstep package. Match them with errors.Is; the
// packages wrap them with detail (which key, which prefix, why).
var (
	// ErrNilClient is returned when a nil *clientv3.Client is passed.
	ErrNilClient = errors.New("lockstep: nil etcd client")

	// ErrNilSession is returned when a nil *Session is passed to a primitive.
	ErrNilSession = errors.New("lockstep: nil session")

	// ErrInvalidTTL is returned by NewSession for a TTL that is not positive,
	// is under the server minimum (2s) or is not a whole number of seconds
	// (etcd leases are granted in seconds).
	ErrInvalidTTL = errors.New("lockstep: invalid session ttl")

	// ErrInvalidMargin is returned by NewSession for a safety margin that is
	// not positive or is more than half the TTL.
	ErrInvalidMargin = errors.New("lockstep: invalid session margin")

	// ErrSessionLost is the Err of a session, and of everything it owned,
	// once no keepalive has succeeded for TTL minus margin, or the server
	// reported the lease gone.
	ErrSessionLost = errors.New("lockstep: session lost")

	// ErrSessionClosed is the Err of a session, and of everything it owned,
	// after Close.
	ErrSessionClosed = errors.New("lockstep: session closed")

	// ErrReleased is the Err of an ownership handle that its owner released
	// (Unlock, Release, Resign, Ack, ...).
	ErrReleased = errors.New("lockstep: released")

	// ErrLost is the Err of an ownership handle whose key was deleted or
	// replaced by someone else while the session was still alive (an
	// operator's etcdctl del, a lease revoked from outside).
	ErrLost = errors.New("lockstep: ownership lost")

	// ErrInvalidPrefix is returned for an empty prefix, "/" alone, or one
	// that ends in "//". The primitives add the separator themselves, as
	// etcd's concurrency package does, so one trailing "/" is accepted and
	// names what it names there: "/a/" keeps its keys under "/a//".
	ErrInvalidPrefix = errors.New("lockstep: invalid prefix")
)
