// Package barrier has two barriers over etcd.
//
// A Barrier is a gate: Hold closes it and returns a Hold (an ownership
// handle) whose Release opens it again, unless someone else holds it by
// then; Wait blocks while it is closed; Barrier.Release opens it whoever
// holds it. With WithSession the hold is attached to a session's lease, so
// a holder that crashes opens the barrier when its lease expires.
//
// A DoubleBarrier lines up a fixed number of participants, round after
// round: Enter returns when count participants have entered the round,
// Leave returns when all of them have left it. The same participants reuse
// the same prefix for every round, with no reset, and nothing is left under
// the prefix once the last round's participants have left. It is made for
// batch workers: N workers process batch k together, and none starts batch
// k+1 before all have finished batch k.
//
// # Guarantees
//
//   - Enter of round k+1 returns only after every participant of round k
//     has called Leave, or has died (its session's lease ended).
//   - Enter returns only when count participants that are alive at the
//     moment the round opens are in it; a participant whose session ends
//     before that no longer counts.
//   - Leave returns only when every participant of the round has left or
//     died; a participant that dies after the round opened counts as having
//     left.
//   - A participant beyond the count-th to arrive, or one that arrives while
//     a round is open, waits for the next round.
//   - Participants that disagree on the count get ErrCountMismatch: the
//     first participant to register for a round fixes its count.
//   - Waiting costs one watch event per participant when a round opens and
//     two when it closes, however many participants there are.
//
// # What is not guaranteed
//
// A barrier orders the participants' calls; it does not make work
// exclusive. A participant whose session is lost may still be working after
// the others have counted it as having left and moved on; a worker that
// must not act after that should stop when its session's Done closes, and
// fence its writes. Death is noticed through leases: a crashed participant
// holds up the others until its lease expires.
//
// See docs/barrier.md for the key layout, the failure behaviour and
// measured figures.
package barrier
