// Package discovery registers service instances in etcd and resolves them
// for gRPC.
//
// Register keeps <prefix>/<service>/<id> under a lease it owns, in etcd
// naming's JSON, for as long as the Registration is open: it is written
// only by guarded transactions (never without a lease, never over another
// registration's key), repaired when changed from outside, and registered
// again with a fresh session after every loss, with backoff and no retry
// limit. Drain marks it draining; Close drains, waits a grace period and
// deletes it.
//
// Watch follows one service's instances; NewResolver resolves
// lockstep:///<service> for gRPC, each endpoint carrying its Instance; the
// WeightedRoundRobin balancer routes by weight and never to a draining
// instance while a serving one is ready. All of them, in one process,
// share one etcd watch per client and prefix (package cache), which
// survives compaction without a gap.
//
// etcd's endpoints.Manager and its etcd:/// resolver read lockstep's
// instances, and lockstep reads theirs (weight 1). See docs/discovery.md.
package discovery
