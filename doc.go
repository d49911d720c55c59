// Package lockstep is a library of distributed coordination recipes over
// etcd v3: mutex, semaphore, leader election, leader-runs-job, barriers and
// a durable priority queue, each in its own package, all standing on the
// Session defined here.
//
// # Sessions
//
// A Session is one etcd lease kept alive in the background. Everything a
// primitive acquires is attached to that lease, so a process that crashes
// releases all of it when the lease expires, and Close releases it at once.
//
// Unlike etcd's concurrency.Session, a lockstep Session tells you it is
// lost before the server can expire its lease, not after: Done closes at
// (send time of the last successful keepalive) + TTL - margin. Work that
// stops when Done closes has stopped before anyone else can be granted what
// this session held.
//
// # The ownership contract
//
// Every handle that represents ownership (a held lock, a permit, a leader
// term, a queue claim) implements Ownership: Done, Err, Token, Key and
// IsOwner.
//
// Locks alone do not guarantee mutual exclusion: a process can pause (GC,
// swap, a stopped VM) after it checked that it holds a lock and before it
// writes. Make exclusion real by fencing:
//
//   - writes to etcd go through cli.Txn(ctx).If(h.IsOwner()).Then(...), which
//     the server rejects once the ownership is gone;
//   - writes to other systems carry h.Token(), and the resource rejects a
//     token lower than the highest it has seen.
//
// # Errors
//
// Errors are sentinel values matched with errors.Is. The ones every package
// shares are defined here (ErrSessionLost, ErrReleased, ErrLost, ...); each
// package adds its own.
package lockstep
