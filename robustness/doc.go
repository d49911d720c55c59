// Package robustness is lockstep's fault-injection suite. It has no API:
// its tests run every primitive on a 3-member embedded etcd cluster while a
// nemesis crashes and restarts members, partitions them, blackholes and
// delays clients, loses the answers to applied writes, cuts clients off
// past the cleanup timeout, compacts history and revokes leases, then check
// the recorded histories — etcd's, read by an unfaulted observer, and each
// worker's, with timestamps: mutual exclusion of fenced writes and
// increasing tokens, at most limit permit holders, one live leader job at
// a time, barrier round order, no lost or doubly acked queue item, no hang;
// the lock, semaphore and queue histories also with porcupine against a
// model. A summary table (operations, faults by kind, violations per
// workload) is printed at the end.
//
// CI runs each workload's faults for 15 s, followed by a calm tail in which
// every worker must make progress again; run it longer with
//
//	go test -run Robust -v ./robustness/ -robust.duration=5m -timeout=60m
//
// docs/robustness.md describes every fault, workload and checker, what the
// suite does not cover, and what it found.
package robustness
