package config

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
)

// Version is a configuration value decoded from the prefix at one
// revision.
type Version[T any] struct {
	Value    T
	Revision int64
}

// Rejection is a version of the prefix that did not become current: it
// could not be decoded (ErrDecode) or failed the validator (ErrInvalid).
type Rejection struct {
	Revision int64
	Err      error
}

// Config is a typed configuration read from an etcd prefix and kept
// current: every version of the prefix is decoded from one snapshot,
// validated, and only then made current, atomically. A version that
// fails is rejected and the last good one stays. A Config is safe for
// concurrent use.
type Config[T any] struct {
	c        *cache.Cache
	dec      Decoder[T]
	validate func(T) error
	onReject func(Rejection)

	stop context.CancelFunc
	done chan struct{} // closed when the update loop returns

	mu       sync.Mutex
	cur      Version[T]
	rejected *Rejection // newer than cur, if any
	watchers map[*watcher[T]]struct{}
	closed   bool
}

// Option configures Open.
type Option[T any] func(*options[T])

type options[T any] struct {
	validate func(T) error
	onReject func(Rejection)
}

// WithValidate sets a function every version must pass before it becomes
// current: a version it returns an error for is rejected (Rejected says
// why) and the last good one stays.
func WithValidate[T any](f func(T) error) Option[T] {
	return func(o *options[T]) { o.validate = f }
}

// WithOnReject sets a function called with each rejected version, from
// the goroutine that follows the prefix: to log it or count it. It should
// return quickly.
func WithOnReject[T any](f func(Rejection)) Option[T] {
	return func(o *options[T]) { o.onReject = f }
}

// Open reads the configuration under prefix with dec and keeps it current.
// It returns when the first version is in: an error wrapping ErrDecode or
// ErrInvalid if it cannot be decoded or validated (there is no last good
// version to keep yet), or the cache's error (see cache.Open). Close it to
// stop following the prefix.
func Open[T any](ctx context.Context, cli *clientv3.Client, prefix string, dec Decoder[T], opts ...Option[T]) (*Config[T], error) {
	if dec == nil {
		return nil, fmt.Errorf("%w: nil decoder", ErrInvalidArgument)
	}
	var o options[T]
	for _, opt := range opts {
		opt(&o)
	}
	c, err := cache.Open(ctx, cli, prefix)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg := &Config[T]{c: c, dec: dec, validate: o.validate, onReject: o.onReject,
		done: make(chan struct{}), watchers: map[*watcher[T]]struct{}{}}
	sub, stop := cfg.subscribe()
	first, ok := <-sub // the whole state; the subscription closes only with stop or a final error
	if !ok {
		stop()
		c.Close()
		return nil, fmt.Errorf("config: %s: %w", prefix, c.Err())
	}
	v, err := cfg.decode(first.Snapshot)
	if err != nil {
		stop()
		c.Close()
		return nil, fmt.Errorf("config: %s: %w", prefix, err)
	}
	cfg.cur = v
	go cfg.follow(sub)
	return cfg, nil
}

// subscribe subscribes to the cache until the Config is closed.
func (cfg *Config[T]) subscribe() (<-chan cache.Update, context.CancelFunc) {
	ctx, stop := context.WithCancel(context.Background())
	cfg.stop = stop
	return cfg.c.Subscribe(ctx), stop
}

// follow turns the cache's updates into versions until the subscription
// ends.
func (cfg *Config[T]) follow(sub <-chan cache.Update) {
	defer close(cfg.done)
	defer cfg.closeWatchers()
	var keys []string
	if k, ok := cfg.dec.(interface{ keys() []string }); ok {
		keys = k.keys()
	}
	for u := range sub {
		if keys != nil && !touches(u, keys) {
			continue // a change elsewhere under the prefix
		}
		v, err := cfg.decode(u.Snapshot)
		if err != nil {
			cfg.reject(Rejection{Revision: u.Revision(), Err: err})
			continue
		}
		cfg.accept(v)
	}
}

// touches reports whether u may change one of keys.
func touches(u cache.Update, keys []string) bool {
	if u.Kind == cache.Whole {
		return true
	}
	for _, c := range u.Changes {
		for _, k := range keys {
			if c.Key == k {
				return true
			}
		}
	}
	return false
}

// decode decodes and validates the snapshot.
func (cfg *Config[T]) decode(snap cache.Snapshot) (Version[T], error) {
	v, err := cfg.dec.Decode(snap)
	if err != nil {
		if !errors.Is(err, ErrDecode) {
			err = fmt.Errorf("%w: %w", ErrDecode, err)
		}
		return Version[T]{}, err
	}
	if cfg.validate != nil {
		if err := cfg.validate(v); err != nil {
			return Version[T]{}, fmt.Errorf("%w: revision %d: %w", ErrInvalid, snap.Revision(), err)
		}
	}
	return Version[T]{Value: v, Revision: snap.Revision()}, nil
}

func (cfg *Config[T]) accept(v Version[T]) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	cfg.cur = v
	cfg.rejected = nil
	for w := range cfg.watchers {
		w.offer(v)
	}
}

func (cfg *Config[T]) reject(r Rejection) {
	cfg.mu.Lock()
	cfg.rejected = &r
	cfg.mu.Unlock()
	if cfg.onReject != nil {
		cfg.onReject(r)
	}
}

// Current returns the current version: the newest that decoded and
// validated.
func (cfg *Config[T]) Current() Version[T] {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.cur
}

// Rejected returns the newest version that failed to decode or validate,
// if it is newer than Current; ok is false otherwise.
func (cfg *Config[T]) Rejected() (r Rejection, ok bool) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.rejected == nil {
		return Rejection{}, false
	}
	return *cfg.rejected, true
}

// Err is nil while the configuration is followed; then why it stopped:
// ErrClosed, or the cache's error (etcd refused it for good).
func (cfg *Config[T]) Err() error {
	cfg.mu.Lock()
	closed := cfg.closed
	cfg.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return cfg.c.Err()
}

// Updates returns a channel that delivers the current version first, then
// each version accepted after it. A consumer that is slow sees the newest
// version, not a backlog: the channel holds one version, replaced by any
// newer one. It is closed when ctx ends, the Config is closed, or the
// configuration stops being followed (Err says why).
func (cfg *Config[T]) Updates(ctx context.Context) <-chan Version[T] {
	w := &watcher[T]{ch: make(chan Version[T], 1)}
	cfg.mu.Lock()
	if cfg.closed {
		cfg.mu.Unlock()
		close(w.ch)
		return w.ch
	}
	defer cfg.mu.Unlock()
	w.offer(cfg.cur)
	cfg.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() { cfg.unwatch(w) })
	return w.ch
}

func (cfg *Config[T]) unwatch(w *watcher[T]) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if _, ok := cfg.watchers[w]; ok {
		delete(cfg.watchers, w)
		close(w.ch)
	}
}

// Close stops following the configuration and closes every Updates
// channel. It is idempotent.
func (cfg *Config[T]) Close() error {
	cfg.mu.Lock()
	if cfg.closed {
		cfg.mu.Unlock()
		return nil
	}
	cfg.closed = true
	cfg.mu.Unlock()
	cfg.stop()
	<-cfg.done
	return cfg.c.Close()
}

// closeWatchers closes every Updates channel: nothing follows now.
func (cfg *Config[T]) closeWatchers() {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	for w := range cfg.watchers {
		w.stop()
		delete(cfg.watchers, w)
		close(w.ch)
	}
}

// watcher is one Updates channel: it holds the newest version not yet
// received.
type watcher[T any] struct {
	ch   chan Version[T]
	stop func() bool
}

// offer replaces what the channel holds with v; cfg.mu is held, so offers
// do not race each other.
func (w *watcher[T]) offer(v Version[T]) {
	select {
	case <-w.ch:
	default:
	}
	w.ch <- v
}
