// Package election is leader election over etcd, compatible with etcd's
// concurrency.Election and `etcdctl elect`.
//
// Each candidate puts one key, prefix/<lease id in hex>, attached to its
// session's lease, with its value (typically who it is). The leader is the
// candidate whose key has the lowest create revision; every other candidate
// waits for the key just before its own to go, so a resignation wakes one
// candidate, not all of them. Because the layout is etcd's, candidates of
// this package, of concurrency.Election and of `etcdctl elect` queue behind
// each other and see each other as leaders.
//
//	e, err := election.New(s, "/elect/indexer")
//	t, err := e.Campaign(ctx, "node-a") // blocks until leader
//	defer t.Resign(ctx)
//	select {
//	case <-t.Done(): // leadership lost: stop, t.Err() says why
//	...
//	}
//
// # Guarantees
//
// A Term is an ownership handle (lockstep.Ownership). Its Done closes when
// the term ends: Resign, session loss (before the server can expire the
// lease), session close, or the key deleted by someone else. Campaign does
// not return a term whose session has ended or whose key is gone, whether
// the lease expired, the session was closed, the lease was revoked from
// outside or the key deleted: etcd's Campaign can ("phantom leadership"),
// when the lease expires while the candidate waits. The one exception is a
// revoke or delete committed in the instant before the handoff, which the
// returned term then reports at once through Done and which IsOwner fences.
//
// Two goroutines campaigning on the same Election (or on two Elections of
// the same session and prefix) share the session's key; they take turns in
// the order they called Campaign, the second waiting in process until the
// first's campaign or term is over, instead of both believing they lead.
//
// # What is not guaranteed
//
// Being leader is a belief held at the moment Campaign returned; Done tells
// of its end only after the fact (a watch event, a missed keepalive). A
// process that pauses (GC, swap, a stopped VM) can keep acting as leader
// after its term ended. Make exclusion real by fencing: guard etcd writes
// with t.IsOwner() in a Txn, and hand t.Token() to any other system, which
// rejects tokens lower than the highest it has seen. Tokens of successive
// leaders of one election strictly increase.
//
// A lease revoked from outside (an operator, another client) deletes the
// leader's key at once; the old leader learns of it from a watch while the
// next candidate learns of it from another, so both can act for a moment.
// Only fencing covers that case.
//
// An Observer (and Election.Leader, Election.Observe) needs no session and
// reports etcd's view: the candidate with the lowest create revision, which
// may be a candidate whose Campaign has not returned yet.
package election
