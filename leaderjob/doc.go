// Package leaderjob runs a job only while this process leads an election,
// for the case where N replicas exist and exactly one must do the work (the
// index builder): the others wait as candidates and one of them takes over
// when the leader stops, dies or is cut off.
//
//	r, err := leaderjob.New(cli, "/elect/indexer", buildIndex,
//		leaderjob.WithIdentity("node-a"), leaderjob.WithTTL(10*time.Second))
//	err = r.Run(ctx) // campaigns, runs buildIndex while leader, campaigns again...
//
// A Runner makes its own session (one lease) on the client, campaigns with
// package election (etcd's concurrency.Election key layout, so `etcdctl
// elect -l PREFIX` shows who leads), and calls the job with a context that
// is cancelled when leadership is lost. It waits for the job to return
// before it campaigns again, and replaces a lost session with a new one.
//
// # Guarantees
//
// The job's ctx is cancelled when the term ends. When the term ends because
// the session cannot renew its lease (the process is cut off from etcd, the
// etcd member it talks to is down), that happens before the lease can
// expire on the server — Session's margin before the TTL — so before any
// other candidate can be elected. A job that stops promptly when its ctx
// ends has stopped before its successor starts, up to clock-rate drift
// between this process and the etcd leader over one TTL.
//
// Cancelling Run's ctx cancels the job, waits for it and resigns, so the
// next candidate takes over at once instead of after the TTL.
//
// # What is not guaranteed
//
// A job that ignores its ctx, or a process that pauses (GC, swap, a stopped
// VM) for longer than the margin, can still be running when its successor
// starts. A lease revoked from outside (an operator, another client) ends
// the term on the server at once, and this process learns of it from a
// watch at about the same time the next candidate does. The successor
// finds that lease gone and waits a settle delay (WithSettle, 250ms by
// default) before its job starts, so a connected old leader stops first;
// one cut off from etcd while its lease is revoked does not hear of it in
// time, and both jobs can run for a while. Fence everything the job writes: guard etcd writes with
// t.IsOwner() in a Txn, and hand t.Token() — strictly increasing from one
// term to the next — to other systems, which reject a lower token than the
// highest they have seen.
package leaderjob
