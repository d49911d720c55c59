package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/cache"
)

// WatchOption configures Watch and NewResolver.
type WatchOption func(*watchOptions)

type watchOptions struct {
	guard  dropGuard
	logger *slog.Logger
}

// WithDropGuard protects against a mass drop: when more than share (0 to
// 1) of a service's instances vanish within window (an etcd restore, an
// operator's mistaken delete), the instances that vanished are still
// reported for up to hold, then the change is accepted. Instances that
// come back end the hold at once. It applies to services that had at
// least three instances; every hold is logged. Off by default.
func WithDropGuard(share float64, window, hold time.Duration) WatchOption {
	return func(o *watchOptions) { o.guard = dropGuard{share: share, window: window, hold: hold} }
}

// WithLogger sets where the drop guard logs; default slog.Default().
func WithLogger(l *slog.Logger) WatchOption { return func(o *watchOptions) { o.logger = l } }

func (o *watchOptions) validate() error {
	g := o.guard
	if g.share == 0 && g.window == 0 && g.hold == 0 {
		return nil
	}
	if !(g.share > 0 && g.share < 1) || g.window <= 0 || g.hold <= 0 {
		return fmt.Errorf("%w: drop guard share %v window %v hold %v (want 0 < share < 1 and positive durations)",
			ErrInvalidOption, g.share, g.window, g.hold)
	}
	return nil
}

// Watcher follows the instances of one service. It reads them from the
// process's shared cache of the whole prefix: one etcd watch per client and
// prefix, however many services and watchers there are.
type Watcher struct {
	c       *cache.Cache
	dir     string
	service string
	o       watchOptions

	mu      sync.Mutex
	shown   []Instance    // what the watcher reports, after the drop guard
	gen     int           // bumped when shown changes
	rev     int64         // the revision shown reflects
	changed chan struct{} // closed and replaced when shown changes
	err     error         // why it stopped

	done    <-chan struct{} // closed by Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
	closing sync.Once
}

// Watch returns a Watcher of service's instances under prefix, once it has
// read them. Errors before any I/O: lockstep.ErrNilClient,
// lockstep.ErrInvalidPrefix, ErrInvalidService, ErrInvalidOption.
func Watch(ctx context.Context, cli *clientv3.Client, prefix, service string, opts ...WatchOption) (*Watcher, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	dir, err := dirOf(prefix)
	if err != nil {
		return nil, err
	}
	if err := validService(service); err != nil {
		return nil, err
	}
	o := watchOptions{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	c, err := cache.Open(ctx, cli, dir)
	if err != nil {
		return nil, fmt.Errorf("discovery: watch %s: %w", service, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	w := &Watcher{c: c, dir: dir, service: service, o: o, changed: make(chan struct{}), done: wctx.Done(), stop: stop}
	snap := c.Snapshot()
	w.shown, w.rev = instancesIn(snap, dir, service), snap.Revision()
	sub := c.Subscribe(wctx)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.follow(wctx, sub)
	}()
	return w, nil
}

// Service is the service watched.
func (w *Watcher) Service() string { return w.service }

// Instances returns the service's instances, sorted by ID: a copy the
// caller may keep and change.
func (w *Watcher) Instances() []Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return cloneList(w.shown)
}

// cloneList returns a copy of list the caller may change.
func cloneList(list []Instance) []Instance {
	out := make([]Instance, len(list))
	for i, in := range list {
		out[i] = in.clone()
	}
	return out
}

// Revision is the etcd revision the instances reflect.
func (w *Watcher) Revision() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rev
}

// Updates returns a channel that receives the instances now, then the
// whole list again each time it changes, each a copy of its own. A reader that falls behind gets
// the latest list, never a stale one. It is closed when ctx ends or the
// Watcher stops.
func (w *Watcher) Updates(ctx context.Context) <-chan []Instance {
	out := make(chan []Instance)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(out)
		sent := -1
		for {
			w.mu.Lock()
			list, gen, changed, err := w.shown, w.gen, w.changed, w.err
			w.mu.Unlock()
			if err != nil {
				return
			}
			if gen != sent {
				select {
				case out <- cloneList(list):
					sent = gen
				case <-ctx.Done():
					return
				case <-w.done:
					return
				}
				continue // a newer list may have come meanwhile
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-w.done:
				return
			}
		}
	}()
	return out
}

// WaitRevision waits until the watcher reflects revision rev (a write's
// revision: read your writes).
func (w *Watcher) WaitRevision(ctx context.Context, rev int64) error {
	if err := w.c.WaitRevision(ctx, rev); err != nil {
		if errors.Is(err, cache.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	for {
		w.mu.Lock()
		have, changed, err := w.rev, w.changed, w.err
		w.mu.Unlock()
		switch {
		case have >= rev:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.done:
			return ErrClosed
		}
	}
}

// Err is nil while the watcher follows the service; then why it stopped
// (ErrClosed, or etcd refused the watch for good).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher and closes its Updates channels. It is
// idempotent.
func (w *Watcher) Close() error {
	w.closing.Do(func() {
		w.stop()
		w.wg.Wait()
		w.c.Close()
		w.mu.Lock()
		w.err = ErrClosed
		w.mu.Unlock()
	})
	return nil
}

// follow applies the cache's updates, through the drop guard, until ctx
// ends or the cache stops.
func (w *Watcher) follow(ctx context.Context, sub <-chan cache.Update) {
	g := w.o.guard
	g.logger, g.service = w.o.logger, w.service
	g.init(w.shown)
	var timer <-chan time.Time
	actual, rev := w.shown, w.rev
	for {
		select {
		case u, ok := <-sub:
			if !ok {
				w.publish(w.shown, rev, fmt.Errorf("discovery: watch %s: %w", w.service, w.c.Err()))
				return
			}
			rev = u.Revision()
			if !w.touches(u) {
				w.publish(w.shown, rev, nil)
				continue
			}
			actual = instancesIn(u.Snapshot, w.dir, w.service)
		case <-timer:
		case <-ctx.Done():
			return
		}
		shown, wake := g.apply(actual, time.Now())
		timer = nil
		if !wake.IsZero() {
			timer = time.After(time.Until(wake))
		}
		w.publish(shown, rev, nil)
	}
}

// touches reports whether u may change the service's instances.
func (w *Watcher) touches(u cache.Update) bool {
	if u.Kind == cache.Whole {
		return true
	}
	under := w.dir + w.service + "/"
	for _, c := range u.Changes {
		if len(c.Key) > len(under) && c.Key[:len(under)] == under {
			return true
		}
	}
	return false
}

// publish makes list the reported instances at rev, and wakes Updates
// readers if anything changed.
func (w *Watcher) publish(list []Instance, rev int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	same := slices.EqualFunc(list, w.shown, Instance.Equal)
	advanced := rev > w.rev
	if advanced {
		w.rev = rev
	}
	if !same {
		w.shown = list
		w.gen++
	}
	if err != nil {
		w.err = err
	}
	if !same || advanced || err != nil {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}
