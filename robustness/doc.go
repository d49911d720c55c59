// Package robustness is lockstep's fault-injection suite. It has no API:
// its tests run every primitive on a 3-member embedded etcd cluster while a
// nemesis crashes and restarts members, partitions them, blackholes and
// delays clients, compacts history and revokes leases, then check the
// recorded histories (mutual exclusion of fenced writes, permit bounds, one
// live leader job at a time, barrier round order, no lost or doubly acked
// queue item), partly with porcupine against a model.
//
//	go test -run Robust -v ./robustness/ -robust.duration=5m -timeout=60m
package robustness
