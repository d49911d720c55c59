// Package embedded runs etcd inside the current process: one member for a
// program or a test that brings its own store, or a cluster of several with
// fault controls (stop, restart, partition) for failure tests.
//
// Servers started at the same time, in one process or in parallel test
// processes, never collide: each picks free loopback ports (and picks again
// if another process took one first) and a fresh temporary data directory,
// and locks its directory so that a second server cannot open it.
//
//	srv, err := embedded.Start(ctx)
//	if err != nil { ... }
//	defer srv.Close()
//	cli, err := srv.Client()
package embedded

import "errors"

var (
	// ErrPortInUse is returned when the client URL given with WithClientURL
	// is already taken.
	ErrPortInUse = errors.New("embedded: port already in use")

	// ErrDirInUse is returned when another server, in this process or
	// another, holds the data directory.
	ErrDirInUse = errors.New("embedded: data dir in use by another server")

	// ErrNotReady is returned when the server did not become ready before
	// ctx ended. The error also matches ctx's error.
	ErrNotReady = errors.New("embedded: server not ready")

	// ErrInvalidOption is returned for an option that makes no sense (an
	// empty name, a malformed URL, a single-member option on a cluster).
	ErrInvalidOption = errors.New("embedded: invalid option")

	// ErrInvalidSize is returned by StartCluster for fewer than one member.
	ErrInvalidSize = errors.New("embedded: invalid cluster size")

	// ErrStopped is returned by member operations that need a running
	// member.
	ErrStopped = errors.New("embedded: member stopped")
)
