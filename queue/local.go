package queue

import "sync"

// Consumers in one process that share a prefix coordinate here, without
// round trips, so that they never race each other for the same item: an
// item is busy from the moment a Dequeue picks it until its claim attempt
// fails or, if it succeeds, until the Item ends. A Dequeue skips busy items
// and takes the next one.
//
// Item IDs carry a random part, so two queues on different clusters that
// use the same prefix cannot mistake each other's items for their own; and
// a busy mark only delays a Dequeue, it never hides an item for good.

type local struct {
	refs int // guarded by registryMu

	mu       sync.Mutex
	busy     map[string]struct{} // item keys
	freed    chan struct{}       // closed when a busy item becomes available again
	claimers map[int64]struct{}  // leases that claimed items here
	bound    string              // see head
}

// maxClaimers bounds the leases remembered; forgetting one only makes a
// Dequeue take a race lost to this process for one lost to another.
const maxClaimers = 1024

var (
	registryMu sync.Mutex
	registry   = map[string]*local{} // by prefix
)

// acquireLocal returns the shared state of prefix; call release when done.
func acquireLocal(prefix string) *local {
	registryMu.Lock()
	defer registryMu.Unlock()
	l := registry[prefix]
	if l == nil {
		l = &local{busy: map[string]struct{}{}, freed: make(chan struct{}), claimers: map[int64]struct{}{}}
		registry[prefix] = l
	}
	l.refs++
	return l
}

// release drops a reference taken by acquireLocal or retain; the entry
// goes when nobody uses it, so nothing accumulates.
func (l *local) release(prefix string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(registry, prefix)
	}
}

// retain takes another reference, for an Item that outlives its Dequeue.
func (l *local) retain() {
	registryMu.Lock()
	l.refs++
	registryMu.Unlock()
}

// mark makes key busy; false if it already was.
func (l *local) mark(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.busy[key]; ok {
		return false
	}
	l.busy[key] = struct{}{}
	return true
}

// unmark ends a busy mark. available says the item is as it was before we
// marked it (our claim attempt failed without anybody claiming it): local
// Dequeues that skipped it and went to wait are woken, since no etcd event
// will tell them.
func (l *local) unmark(key string, available bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.busy, key)
	if available {
		l.wakeLocked()
	}
}

// wake wakes the local Dequeues waiting for a busy item to come free.
func (l *local) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wakeLocked()
}

func (l *local) wakeLocked() {
	close(l.freed)
	l.freed = make(chan struct{})
}

func (l *local) isBusy(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.busy[key]
	return ok
}

// freedCh returns the channel the next unmark(available) closes. Take it
// before reading the state it guards, so that no release is missed.
func (l *local) freedCh() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freed
}

// claimedBy records that lease claims items in this process.
func (l *local) claimedBy(lease int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.claimers[lease]; ok {
		return
	}
	if len(l.claimers) >= maxClaimers {
		clear(l.claimers)
	}
	l.claimers[lease] = struct{}{}
}

// isLocal reports whether lease has claimed items in this process.
func (l *local) isLocal(lease int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.claimers[lease]
	return ok
}

func (l *local) getBound() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bound
}

// setBound moves the bound after an unbounded read.
func (l *local) setBound(bound string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bound = bound
}

// clearBound drops the bound if it is still old.
func (l *local) clearBound(old string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bound == old {
		l.bound = ""
	}
}
