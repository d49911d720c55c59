// Package cache keeps an always-current local copy of the keys under an
// etcd prefix: the one watch engine under config and discovery, and what
// client-go's reflector and shared informer are to Kubernetes.
//
//	c, err := cache.Open(ctx, cli, "/config/app/")
//	defer c.Close()
//	snap := c.Snapshot() // immutable, at one revision
//	for u := range c.Subscribe(ctx) {
//		// u.Kind == cache.Whole: the whole state; else u.Changes
//	}
//
// What it guarantees:
//
//   - Never a gap, never a dead channel. It lists the prefix at one
//     revision and watches from the next. When the watch cannot go on (a
//     compaction, a broken stream, a member without a leader), it backs
//     off, lists again and delivers the difference as ordinary changes
//     marked Resync. Subscribers never see the watch die.
//   - One etcd watch per client and prefix in a process, however many
//     caches and subscribers.
//   - Snapshots are immutable and taken in O(1); every update carries the
//     snapshot it leads to.
//   - A subscriber that falls behind receives a fresh whole state instead
//     of what it missed; the cache never waits for it.
//   - Read your writes: WaitRevision(ctx, rev) returns once the copy
//     reflects revision rev.
//
// What it does not guarantee: that a subscriber sees every intermediate
// value. A resync sums up what happened while the watch was down as one
// step (a key written twice shows only its last value; a key created and
// deleted does not show at all), and a subscriber that fell behind skips
// to the current state. A permission error is final: the subscriptions
// close and Err says why. docs/cache.md has the details and the figures.
package cache
