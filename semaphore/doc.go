// Package semaphore is a counting semaphore over etcd: at most N holders of
// a named resource at any instant, across processes, granted in FIFO order.
//
//	sem, err := semaphore.New(s, "/sem/payments-api", 3)
//	p, err := sem.Acquire(ctx)        // blocks; FIFO
//	defer p.Release(ctx)
//
// # Guarantees
//
//   - At most limit permits are held at any etcd revision. A permit is a key
//     under prefix/ attached to the session's lease; the keys are ordered by
//     create revision and the first limit of them hold.
//   - Permits are granted in the order the Acquire and TryAcquire calls
//     reached etcd.
//   - A crashed holder's permit is freed when its session's lease expires;
//     Session.Close frees every permit of the session at once.
//   - Uncontended Acquire, TryAcquire and Release cost one round trip each.
//   - A release wakes one waiter (two watch events in all), not every waiter.
//   - Clients that disagree on the limit for a prefix get ErrLimitMismatch;
//     no permit is granted while a key of another limit is ahead of it.
//   - Two goroutines on one session hold two separate permits.
//
// # Not guaranteed
//
// A permit can end before its holder notices: the session can be lost (Done
// closes before the server can expire the lease, up to clock drift), or an
// operator can delete the key (noticed through a watch, after a delay). A
// process can also pause between checking that it holds a permit and using
// it. Make the bound real by fencing: guard writes to etcd with
// cli.Txn(ctx).If(p.IsOwner()), and hand p.Token() to other systems.
//
// A waiter that crashes at the moment it is promoted, before it wakes the
// waiter behind it, delays that waiter until its lease expires (its own
// permit is held until then anyway).
//
// The prefix belongs to the semaphore: do not store other keys under
// prefix/, nor nest another semaphore's prefix inside it. See docs/semaphore.md for the key layout, the waiting protocol
// and failure behaviour.
package semaphore
