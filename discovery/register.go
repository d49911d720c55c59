package discovery

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// DefaultGrace is how long Close waits between draining an instance and
// deleting it: time for every client to see the drain.
const DefaultGrace = 2 * time.Second

// Event tells a registration's owner that the instance was registered
// (again) or that its registration was lost, and why.
type Event struct {
	Registered bool
	Lease      clientv3.LeaseID // the lease it is registered under
	Err        error            // why it is not registered, if not
}

// HealthSetter is what WithHealth drives; grpc's *health.Server is one.
type HealthSetter interface {
	SetServingStatus(service string, status healthpb.HealthCheckResponse_ServingStatus)
}

// RegisterOption configures Register.
type RegisterOption func(*registerOptions)

type registerOptions struct {
	ttl      time.Duration
	grace    time.Duration
	onChange func(Event)
	health   HealthSetter
	names    []string
}

// WithTTL sets the TTL of the registration's leases: how long an instance
// whose process died stays listed. Default lockstep.DefaultTTL.
func WithTTL(ttl time.Duration) RegisterOption { return func(o *registerOptions) { o.ttl = ttl } }

// WithGrace sets how long Close waits between the drain and the delete.
// Default DefaultGrace; 0 deletes at once.
func WithGrace(d time.Duration) RegisterOption { return func(o *registerOptions) { o.grace = d } }

// WithOnChange calls fn, from the registration's goroutine, each time the
// instance is registered or loses its registration. fn must not block.
func WithOnChange(fn func(Event)) RegisterOption {
	return func(o *registerOptions) { o.onChange = fn }
}

// WithHealth sets h's status for each name ("" if none is given: the
// whole server) to SERVING while the instance is registered and serving,
// and NOT_SERVING while it is not registered, draining or closed.
func WithHealth(h HealthSetter, names ...string) RegisterOption {
	return func(o *registerOptions) {
		o.health = h
		o.names = names
		if len(names) == 0 {
			o.names = []string{""}
		}
	}
}

// Registration keeps one instance registered until Close (or until its
// etcd client is closed, which it reports as a loss): under a lease
// it owns, re-registered with a fresh lease after every loss (jittered
// backoff, no retry limit), and repaired if its key is changed or deleted
// from outside. Its methods are safe for concurrent use.
type Registration struct {
	cli   *clientv3.Client
	cache *cache.Cache
	key   string
	o     registerOptions

	mu      sync.Mutex
	want    Instance // what etcd should hold
	wantGen int      // bumped by each Drain and Update
	doneGen int      // the generation etcd holds; -1 while unregistered
	lease   clientv3.LeaseID
	lastErr error         // why it is not registered now
	changed chan struct{} // closed and replaced when doneGen or lastErr changes
	closed  bool

	poke chan struct{} // buffered: want changed
	stop context.CancelFunc
	done chan struct{} // closed when the goroutine has stopped

	closeOnce sync.Once
}

// Register registers in under prefix (key prefix/service/id) and returns
// once etcd holds it, or when ctx ends; then it stops and returns ctx's
// error, wrapping the reason it could not register (ErrIDInUse if
// another registration's lease holds the key). The Registration keeps the
// instance registered until Close.
//
// Errors before any write: lockstep.ErrNilClient,
// lockstep.ErrInvalidPrefix, ErrInvalidService, ErrInvalidID,
// ErrInvalidAddr, ErrInvalidWeight, lockstep.ErrInvalidTTL,
// ErrInvalidOption.
func Register(ctx context.Context, cli *clientv3.Client, prefix string, in Instance, opts ...RegisterOption) (*Registration, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	dir, err := dirOf(prefix)
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	o := registerOptions{ttl: lockstep.DefaultTTL, grace: DefaultGrace}
	for _, opt := range opts {
		opt(&o)
	}
	if o.grace < 0 {
		return nil, fmt.Errorf("%w: grace %v", ErrInvalidOption, o.grace)
	}
	if o.ttl < lockstep.MinTTL || o.ttl%time.Second != 0 {
		return nil, fmt.Errorf("%w: %v (want a whole number of seconds, at least %v)", lockstep.ErrInvalidTTL, o.ttl, lockstep.MinTTL)
	}
	c, err := cache.Open(ctx, cli, dir)
	if err != nil {
		return nil, fmt.Errorf("discovery: register %s/%s: %w", in.Service, in.ID, err)
	}
	in = in.clone()
	in.Status = Serving
	in.Key, in.Revision, in.Lease = "", 0, 0
	lctx, stop := context.WithCancel(context.Background())
	r := &Registration{
		cli: cli, cache: c, key: instanceKey(dir, in.Service, in.ID), o: o,
		want: in, doneGen: -1, changed: make(chan struct{}),
		poke: make(chan struct{}, 1), stop: stop, done: make(chan struct{}),
	}
	r.setHealth()
	go r.run(lctx)
	if err := r.wait(ctx, 0); err != nil {
		r.shutdown()
		return nil, err
	}
	return r, nil
}

// Key is the instance's key.
func (r *Registration) Key() string { return r.key }

// Instance returns the instance as it is to be registered.
func (r *Registration) Instance() Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.want.clone()
}

// Registered reports whether etcd holds the instance as it is to be
// registered now, and, if not, why.
func (r *Registration) Registered() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.doneGen == r.wantGen, r.lastErr
}

// Drain marks the instance draining: resolvers route no new calls to it
// while a serving instance of its service exists. It returns once etcd
// holds the mark, or when ctx ends.
func (r *Registration) Drain(ctx context.Context) error {
	return r.Update(ctx, func(in *Instance) { in.Status = Draining })
}

// Update changes the instance with fn (its weight, zone, version,
// metadata or status; its service, ID and address stay) and returns once
// etcd holds the change, or when ctx ends; the change is kept either way
// and written by every later registration. Errors before any write:
// ErrInvalidWeight, ErrClosed.
func (r *Registration) Update(ctx context.Context, fn func(*Instance)) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	in := r.want.clone()
	fn(&in)
	in.Service, in.ID, in.Addr = r.want.Service, r.want.ID, r.want.Addr
	in.Key, in.Revision, in.Lease = "", 0, 0
	if in.Status != Draining {
		in.Status = Serving
	}
	if err := in.Validate(); err != nil {
		r.mu.Unlock()
		return err
	}
	r.want = in
	r.wantGen++
	gen := r.wantGen
	r.mu.Unlock()
	r.setHealth()
	select {
	case r.poke <- struct{}{}:
	default:
	}
	return r.wait(ctx, gen)
}

// Close drains the instance, waits the grace period (see WithGrace),
// deletes it and stops. The drain is skipped if the instance is not
// registered, and given up if etcd does not take it within the grace
// period plus one attempt's time. If ctx ends first, Close skips what is
// left of the drain and the grace period and returns ctx's error. Either
// way it deletes the key by revoking the leases that may hold it, under a
// bound of its own (retry.CleanupTimeout, as every lockstep cleanup); a
// lease it cannot revoke, with etcd out of reach, expires. It is
// idempotent.
func (r *Registration) Close(ctx context.Context) error {
	var err error
	r.closeOnce.Do(func() {
		r.mu.Lock()
		registered := r.doneGen >= 0
		r.mu.Unlock()
		if registered && r.o.grace > 0 {
			dctx, cancel := context.WithTimeout(ctx, r.o.grace+retry.AttemptTimeout)
			if r.Drain(dctx) == nil {
				sleep(ctx, r.o.grace)
			}
			cancel()
		}
		r.shutdown()
		err = ctx.Err()
	})
	return err
}

// shutdown stops the goroutine, which revokes its leases on the way out.
func (r *Registration) shutdown() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
	<-r.done
	r.cache.Close()
	r.mu.Lock()
	r.doneGen, r.lease, r.lastErr = -1, 0, ErrClosed
	r.signal()
	r.mu.Unlock()
	r.setHealth()
}

// wait waits until etcd holds generation gen or later.
func (r *Registration) wait(ctx context.Context, gen int) error {
	for {
		r.mu.Lock()
		done, closed, lastErr, changed := r.doneGen >= gen, r.closed, r.lastErr, r.changed
		r.mu.Unlock()
		switch {
		case done:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-changed:
		case <-r.done:
			return ErrClosed
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (%w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if !retry.Pause(ctx, d, nil) {
		return ctx.Err()
	}
	return nil
}
