// Package link lets lockstep's own packages reach the parts of a Session
// that its users do not see: its context, its in-process reservations and
// its janitor. Package lockstep fills the functions in when it is
// initialised; they take the session as an any because this package cannot
// import lockstep, which imports it. (grpc-go reaches its internals the
// same way.)
package link

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	// Context returns a context that ends when the session ends (lost or
	// closed), with the session's Err as its cause.
	Context func(s any) context.Context

	// Reserve waits, first come first served, until no other goroutine of
	// this process uses key under the session, then claims it. release must
	// be called once; the session's end releases everything at once.
	Reserve func(ctx context.Context, s any, key string) (release func(), err error)

	// Sweep hands the session a cleanup that a call could not finish: the
	// session commits it, retrying with backoff, until etcd answers or the
	// session ends, and then runs its Done.
	Sweep func(s any, c Cleanup)
)

// Cleanup is a guarded transaction that removes what a failed call of a
// session left behind.
type Cleanup struct {
	If   []clientv3.Cmp
	Then []clientv3.Op
	Else []clientv3.Op
	// Next, if not nil, reads the answer and returns the cleanups it calls
	// for (the keys of others that point at what was deleted, say); they
	// are done in turn.
	Next    func(*clientv3.TxnResponse) []Cleanup
	Done    func()        // runs once the cleanup is over, however it ends
	Recheck time.Duration // commit again this long after success; 0: no
}
