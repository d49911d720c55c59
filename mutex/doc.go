// Package mutex is a distributed, first-come-first-served exclusive lock
// over etcd, with loss notification and fencing tokens.
//
//	m, err := mutex.New(s, "/locks/report")
//	l, err := m.Lock(ctx)
//	defer l.Unlock(ctx)
//	// work, fenced by l.IsOwner() or l.Token()
//
// A lock is one key, prefix + "/" + the session's lease in hex, exactly as
// etcd's concurrency.Mutex lays it out; the holder is the key with the
// lowest create revision. mutex, concurrency.Mutex and etcdctl lock
// therefore exclude each other on the same prefix.
//
// What it adds to concurrency.Mutex:
//
//   - A held Lock tells you when it ends (Done, Err): unlocked, session lost
//     (before the server can expire the lease), session closed, or its key
//     deleted by someone else.
//   - Two goroutines sharing one session exclude each other.
//   - Unlock is guarded by the lock's create revision: a retried or late
//     Unlock never deletes a newer holder's key.
//   - Lock does not return a lock after its session has ended, whether it
//     expired, was closed, or its lease was revoked from outside; the one
//     exception is a revoke or delete committed in the instant before the
//     handoff, which the returned lock then reports at once through Done
//     and which IsOwner fences.
//   - Waiting costs no extra reads at the head of the queue, and a watch
//     registered as current, so handoff is not delayed by etcd's 100ms
//     watch catch-up loop.
//
// What it does not guarantee: that nobody else acts as holder at the same
// instant. A process can pause after it checked its lock and before it
// writes, and a lock's key can be deleted at any moment (an operator, a
// revoked lease) before this process hears of it. Make exclusion real by
// fencing: write to etcd with cli.Txn(ctx).If(l.IsOwner()).Then(...), and
// hand l.Token() to any other resource, which must reject a token lower than
// the highest it has seen.
package mutex
