package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// DefaultBuffer is how many updates a subscriber may fall behind by
// before it is given a whole state instead; see WithBuffer.
const DefaultBuffer = 64

// Cache is an always-current local copy of the keys under a prefix. Every
// Cache of one etcd client and prefix in a process shares one copy and one
// etcd watch. A Cache is safe for concurrent use.
type Cache struct {
	e      *engine
	buffer int

	closeOnce sync.Once
	closed    chan struct{}
	subs      sync.WaitGroup
}

// Option configures Open.
type Option func(*options)

type options struct{ buffer int }

// WithBuffer sets how many updates each subscriber of this Cache may fall
// behind by before it is given a whole state instead. Default
// DefaultBuffer; it must be at least 1.
func WithBuffer(n int) Option { return func(o *options) { o.buffer = n } }

// Open returns a cache of the keys under prefix (a plain key prefix: "/a/"
// does not hold "/ab"), once it holds every write that completed before
// the call. It lists the prefix with a linearizable read (a Cache that
// shares an earlier one's copy reads the revision and waits for the copy
// to reach it), then follows it from the next revision with a
// watch; when the watch cannot go on (compaction, a broken stream, a lost
// leader), it lists again and delivers the difference as a resync. If ctx
// ends first, Open returns ctx's error; if etcd refuses the read
// (permission denied), that error.
//
// Errors before any I/O: lockstep.ErrNilClient, lockstep.ErrInvalidPrefix
// for an empty prefix, ErrInvalidOption.
func Open(ctx context.Context, cli *clientv3.Client, prefix string, opts ...Option) (*Cache, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	if prefix == "" {
		return nil, fmt.Errorf("cache: %w: empty", lockstep.ErrInvalidPrefix)
	}
	o := options{buffer: DefaultBuffer}
	for _, opt := range opts {
		opt(&o)
	}
	if o.buffer < 1 {
		return nil, fmt.Errorf("%w: buffer %d (want at least 1)", ErrInvalidOption, o.buffer)
	}
	e, fresh := acquire(cli, prefix)
	select {
	case <-e.ready:
	case <-ctx.Done():
		e.release()
		return nil, ctx.Err()
	}
	e.mu.Lock()
	err := e.err
	e.mu.Unlock()
	if err != nil {
		e.release()
		return nil, fmt.Errorf("cache: open %s: %w", prefix, err)
	}
	c := &Cache{e: e, buffer: o.buffer, closed: make(chan struct{})}
	if !fresh {
		// A copy others opened earlier may trail the server by a moment:
		// catch up with a linearizable read, as a fresh listing would.
		if err := c.catchUp(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("cache: open %s: %w", prefix, err)
		}
	}
	return c, nil
}

// catchUp waits until the cache reflects the revision etcd is at now.
func (c *Cache) catchUp(ctx context.Context) error {
	resp, err := rpc.Get(ctx, c.e.cli, nil, c.e.prefix, clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	return c.WaitRevision(ctx, resp.Header.Revision)
}

// Close ends the cache's subscriptions and waits for them; the last Cache
// of a prefix to close stops its watch. It is idempotent.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.subs.Wait()
		c.e.release()
	})
	return nil
}

// Prefix is the prefix the cache holds.
func (c *Cache) Prefix() string { return c.e.prefix }

// Snapshot returns the current state. It costs nothing and never changes.
func (c *Cache) Snapshot() Snapshot {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return c.e.snap
}

// Subscribe returns a channel of updates: first the whole state, then
// every change in revision order. A subscriber that falls behind by more
// than the cache's buffer receives a fresh whole state instead of the
// changes it missed; the cache never waits for a subscriber and never
// drops a change without saying so. The channel is closed when ctx ends,
// the Cache is closed, or etcd refuses the cache for good (Err says why).
func (c *Cache) Subscribe(ctx context.Context) <-chan Update {
	s := c.e.subscribe(c.buffer)
	select {
	case <-c.closed:
		c.e.unsubscribe(s)
		close(s.out)
		return s.out
	default:
	}
	c.subs.Add(1)
	go func() {
		defer c.subs.Done()
		s.run(ctx, c.closed)
	}()
	return s.out
}

// WaitRevision waits until the cache reflects revision rev (a write's
// header revision, say: read your writes). Writes outside the prefix move
// the revision too; the cache asks the server to confirm its progress
// while it waits. It returns ctx's error, ErrClosed, or the error that
// stopped the cache.
func (c *Cache) WaitRevision(ctx context.Context, rev int64) error {
	e := c.e
	for {
		e.mu.Lock()
		have, err, advanced, wctx := e.snap.rev, e.err, e.advanced, e.watchCtx
		e.mu.Unlock()
		switch {
		case have >= rev:
			return nil
		case err != nil:
			return fmt.Errorf("cache: %s: %w", e.prefix, err)
		}
		if wctx != nil {
			e.cli.RequestProgress(wctx) // answered once the watch has caught up
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-advanced:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.closed:
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}

// Err is nil while the cache follows its prefix; then why it stopped:
// etcd refused it for good (permission denied), or ErrClosed.
func (c *Cache) Err() error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return c.e.err
}

// Progress says how current the cache is: the revision it reflects, and
// when the server last confirmed that nothing under the prefix changed
// after it (a listing, a change, or a progress notification).
func (c *Cache) Progress() (rev int64, confirmed time.Time) {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return c.e.snap.rev, c.e.confirmed
}

// Resyncs is how many times the cache listed its prefix again because
// its watch could not go on.
func (c *Cache) Resyncs() int {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return c.e.resyncs
}
