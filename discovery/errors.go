package discovery

import "errors"

// Errors returned before any write, for input that cannot be registered or
// resolved. Match them with errors.Is.
var (
	// ErrInvalidService: a service name that is empty or holds a '/'.
	ErrInvalidService = errors.New("discovery: invalid service name")
	// ErrInvalidID: an instance ID that is empty or holds a '/'.
	ErrInvalidID = errors.New("discovery: invalid instance id")
	// ErrInvalidAddr: an address that is not host:port with a host and
	// a port.
	ErrInvalidAddr = errors.New("discovery: invalid address")
	// ErrInvalidWeight: a negative weight.
	ErrInvalidWeight = errors.New("discovery: invalid weight")
	// ErrInvalidOption: an option out of its range.
	ErrInvalidOption = errors.New("discovery: invalid option")
)

// Errors of a registration's life.
var (
	// ErrClosed is returned by a Registration's methods after Close, and
	// by a Watcher's after its Close.
	ErrClosed = errors.New("discovery: closed")
	// ErrIDInUse says that the instance's key belongs to another live
	// registration (another lease). Register keeps waiting for it to go;
	// it reports this error if its ctx ends first.
	ErrIDInUse = errors.New("discovery: instance id in use by another registration")
)
