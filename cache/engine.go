package cache

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/immutable"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// An engine is the one copy of a prefix that every Cache of one client
// and prefix in this process shares: one list, one etcd watch, one
// goroutine. The last Cache to close stops it.
type engine struct {
	cli    *clientv3.Client
	prefix string
	refs   int // guarded by registryMu

	stop  context.CancelFunc
	done  chan struct{} // closed when run returns
	ready chan struct{} // closed once the first list is in, or the engine failed

	mu        sync.Mutex
	snap      Snapshot
	err       error // why the engine stopped for good
	subs      map[*subscriber]struct{}
	advanced  chan struct{}   // closed and replaced when snap's revision or err changes
	confirmed time.Time       // when the server last confirmed snap current
	watchCtx  context.Context // the watch's, for progress requests; nil between watches
	resyncs   int
}

type engineKey struct {
	cli    *clientv3.Client
	prefix string
}

var (
	registryMu sync.Mutex
	registry   = map[engineKey]*engine{}
)

// acquire returns the running engine of cli and prefix, starting one if
// there is none (or the one there failed for good).
func acquire(cli *clientv3.Client, prefix string) (e *engine, fresh bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	k := engineKey{cli, prefix}
	e = registry[k]
	if e == nil || e.failed() {
		fresh = true
		ctx, stop := context.WithCancel(context.Background())
		e = &engine{
			cli:      cli,
			prefix:   prefix,
			stop:     stop,
			done:     make(chan struct{}),
			ready:    make(chan struct{}),
			subs:     map[*subscriber]struct{}{},
			advanced: make(chan struct{}),
		}
		registry[k] = e
		go e.run(ctx)
	}
	e.refs++
	return e, fresh
}

// release drops a reference; the last one stops the engine and waits for
// it.
func (e *engine) release() {
	registryMu.Lock()
	e.refs--
	last := e.refs == 0
	if last {
		k := engineKey{e.cli, e.prefix}
		if registry[k] == e {
			delete(registry, k)
		}
	}
	registryMu.Unlock()
	if last {
		e.stop()
		<-e.done
	}
}

func (e *engine) failed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err != nil
}

// errWatchEnded says the watch stopped without saying why (its stream
// broke, the member went away): list again.
var errWatchEnded = errors.New("cache: watch ended")

// run lists the prefix and follows it with a watch, and lists again
// whenever the watch cannot go on, until ctx ends or etcd refuses it for
// good.
func (e *engine) run(ctx context.Context) {
	defer close(e.done)
	defer e.fail(ErrClosed) // whatever else happened, nothing follows now
	for attempt := 0; ; attempt++ {
		resp, err := rpc.Get(ctx, e.cli, nil, e.prefix, clientv3.WithPrefix())
		if err == nil {
			e.load(resp)
			var progressed bool
			progressed, err = e.follow(ctx, resp.Header.Revision+1)
			if progressed {
				attempt = 0
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case final(err):
			e.fail(err)
			return
		}
		if !retry.Pause(ctx, retry.Delay(attempt), nil) {
			return
		}
	}
}

// final reports an error that listing again cannot mend: etcd refuses who
// is asking, or the client is closed.
func final(err error) bool {
	return retry.Refused(err) || errors.Is(err, rpc.ErrClientClosed)
}

// load takes in a listing: the first state, or, after the watch broke, a
// new one whose difference from the old is published as a resync.
func (e *engine) load(resp *clientv3.GetResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rev := resp.Header.Revision
	e.confirmed = time.Now()
	select {
	case <-e.ready:
	default:
		b := immutable.NewSortedMapBuilder[string, KeyValue](nil)
		for _, kv := range resp.Kvs {
			b.Set(string(kv.Key), fromEtcd(kv))
		}
		e.snap = Snapshot{prefix: e.prefix, rev: rev, m: b.Map()}
		close(e.ready)
		e.advance()
		return
	}
	changes := diff(e.snap, resp.Kvs, rev)
	e.resyncs++
	e.publish(Update{Kind: Changes, Resync: true, Snapshot: e.snap.with(rev, changes), Changes: changes})
}

// diff returns the changes that lead from old to the listing kvs, taken at
// revision rev: puts in revision order, then deletes (at rev: when they
// happened is not known).
func diff(old Snapshot, kvs []*mvccpb.KeyValue, rev int64) []Change {
	var changes []Change
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key)
		seen[k] = true
		prev, ok := old.Get(k)
		if ok && prev.ModRevision == kv.ModRevision {
			continue
		}
		changes = append(changes, Change{Type: Put, KeyValue: fromEtcd(kv), Prev: prev})
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return cmp.Compare(a.ModRevision, b.ModRevision) })
	for k, prev := range old.All() {
		if !seen[k] {
			changes = append(changes, Change{Type: Delete, KeyValue: KeyValue{Key: k, ModRevision: rev}, Prev: prev})
		}
	}
	return changes
}

// follow watches the prefix from revision from until the watch cannot go
// on, and reports whether any change came in.
func (e *engine) follow(ctx context.Context, from int64) (progressed bool, err error) {
	// A member cut off from its cluster would keep the watch open and
	// silent; requiring a leader makes it end so that we move on.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	e.setWatchCtx(wctx)
	defer e.clearWatchCtx()
	for resp := range e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify()) {
		switch {
		case resp.CompactRevision != 0:
			return progressed, nil // list again at once
		case resp.Err() != nil:
			return progressed, resp.Err()
		case resp.Canceled:
			return progressed, errWatchEnded
		case resp.IsProgressNotify():
			e.confirm(resp.Header.Revision)
		case len(resp.Events) > 0:
			e.apply(resp.Events)
			progressed = true
		}
	}
	switch {
	case ctx.Err() != nil:
		return progressed, ctx.Err()
	case e.cli.Ctx().Err() != nil:
		return progressed, rpc.ErrClientClosed
	}
	return progressed, errWatchEnded
}

// apply publishes one watch response's events.
func (e *engine) apply(events []*clientv3.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changes := make([]Change, len(events))
	var rev int64
	for i, ev := range events {
		k := string(ev.Kv.Key)
		prev, _ := e.snap.Get(k)
		if ev.Type == mvccpb.DELETE {
			changes[i] = Change{Type: Delete, KeyValue: KeyValue{Key: k, ModRevision: ev.Kv.ModRevision}, Prev: prev}
		} else {
			changes[i] = Change{Type: Put, KeyValue: fromEtcd(ev.Kv), Prev: prev}
		}
		rev = ev.Kv.ModRevision
	}
	e.confirmed = time.Now()
	e.publish(Update{Kind: Changes, Snapshot: e.snap.with(rev, changes), Changes: changes})
}

// confirm records that the server has sent every change up to rev.
func (e *engine) confirm(rev int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.confirmed = time.Now()
	if rev > e.snap.rev {
		e.snap.rev = rev
		e.advance()
	}
}

// publish makes u's snapshot current and hands u to every subscriber;
// e.mu is held.
func (e *engine) publish(u Update) {
	e.snap = u.Snapshot
	for s := range e.subs {
		s.push(u)
	}
	e.advance()
}

// advance wakes whoever waits for a revision; e.mu is held.
func (e *engine) advance() {
	close(e.advanced)
	e.advanced = make(chan struct{})
}

// fail stops the engine for good with err, closing every subscription.
func (e *engine) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return
	}
	e.err = err
	select {
	case <-e.ready:
	default:
		close(e.ready)
	}
	for s := range e.subs {
		s.signal()
	}
	e.advance()
}

func (e *engine) setWatchCtx(ctx context.Context) {
	e.mu.Lock()
	e.watchCtx = ctx
	e.mu.Unlock()
}

func (e *engine) clearWatchCtx() {
	e.mu.Lock()
	e.watchCtx = nil
	e.mu.Unlock()
}
