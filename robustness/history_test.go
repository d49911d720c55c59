package robustness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// change is one event of etcd's history under a workload's prefix: what
// the server did, at which revision, and when the observer learned of it.
// seen is an upper bound on when the change took effect, which is what the
// real-time checks need: whatever a change ended had ended by then.
type change struct {
	rev     int64
	del     bool
	key     string
	value   string
	create  int64 // create revision of the incarnation put or deleted
	version int64
	lease   clientv3.LeaseID
	seen    time.Duration
}

// history is every change under a prefix, in revision order, read by the
// unfaulted observer with a watch from revision 1. Checkers replay it.
type history struct {
	mu      sync.Mutex
	changes []change
	last    int64 // the revision of the last change delivered
	err     error // the watch lost part of the history
	live    map[string]change
}

// record starts reading the history under prefix; stop ends it, after it
// has seen everything written so far.
func (e *env) record(prefix string) (h *history, stop func()) {
	h = &history{live: map[string]change{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.follow(ctx, e, prefix)
	}()
	e.hist = h
	return h, func() {
		e.syncHistory(h, prefix)
		cancel()
		<-done
	}
}

// follow watches from the revision after the last one seen until ctx ends.
// The watch requires a leader, so one on a member cut off from its peers is
// cancelled and resumes through another member instead of going quiet.
func (h *history) follow(ctx context.Context, e *env, prefix string) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		h.mu.Lock()
		from := h.last + 1
		h.mu.Unlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range e.observer.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			if resp.CompactRevision != 0 {
				h.fail(fmt.Errorf("history from revision %d was compacted at %d", from, resp.CompactRevision))
				cancel()
				return
			}
			if resp.Err() != nil {
				break
			}
			h.add(e.now(), resp.Events)
		}
		cancel()
		sleep(ctx, 50*time.Millisecond)
	}
}

func (h *history) add(seen time.Duration, evs []*clientv3.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	floor := h.last
	for _, ev := range evs {
		kv := ev.Kv
		if kv.ModRevision <= floor {
			continue // delivered twice across a resumed watch
		}
		c := change{
			rev:     kv.ModRevision,
			key:     string(kv.Key),
			value:   string(kv.Value),
			create:  kv.CreateRevision,
			version: kv.Version,
			lease:   clientv3.LeaseID(kv.Lease),
			seen:    seen,
		}
		if ev.Type == mvccpb.DELETE {
			prev, ok := h.live[c.key]
			if !ok {
				continue
			}
			c.del, c.create, c.lease, c.value = true, prev.create, prev.lease, prev.value
			delete(h.live, c.key)
		} else {
			h.live[c.key] = c
		}
		h.changes = append(h.changes, c)
		h.last = max(h.last, c.rev)
	}
}

func (h *history) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
}

// progress is the last revision the history holds: compacting up to it
// cannot cut the observer's watch.
func (h *history) progress() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// syncHistory writes a marker under the prefix and waits until the history
// has it, so that the history holds everything written before.
func (e *env) syncHistory(h *history, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for rev == 0 {
		resp, err := e.observer.Put(ctx, prefix+"end", "")
		switch {
		case err == nil:
			rev = resp.Header.Revision
		case ctx.Err() != nil:
			h.fail(fmt.Errorf("history: write the end marker: %w", err))
			return
		default:
			sleep(ctx, 100*time.Millisecond)
		}
	}
	for h.progress() < rev {
		select {
		case <-ctx.Done():
			h.fail(fmt.Errorf("history: the observer did not reach revision %d", rev))
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// all returns the changes recorded, in revision order, and the error that
// makes them incomplete, if any.
func (h *history) all() ([]change, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]change(nil), h.changes...), h.err
}

// revisions groups changes by revision: the changes of one transaction.
func revisions(cs []change) [][]change {
	var out [][]change
	for i := 0; i < len(cs); {
		j := i
		for j < len(cs) && cs[j].rev == cs[i].rev {
			j++
		}
		out = append(out, cs[i:j])
		i = j
	}
	return out
}

// incarnation names one life of a key: from its creation at create to its
// deletion.
type incarnation struct {
	key    string
	create int64
}

// ends maps each incarnation deleted in the history to its deletion.
func ends(cs []change) map[incarnation]change {
	out := map[incarnation]change{}
	for _, c := range cs {
		if c.del {
			out[incarnation{c.key, c.create}] = c
		}
	}
	return out
}
