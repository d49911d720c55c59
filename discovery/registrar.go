package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// reregister is the backoff between attempts to register again: soon
// after a short blip, no faster than every few seconds in a long outage.
var reregister = retry.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// run keeps the instance registered until ctx ends (Close): one session
// after another, for as long as it takes. On the way out it revokes the
// leases that may hold the key.
func (r *Registration) run(ctx context.Context) {
	defer close(r.done)
	sub := r.cache.Subscribe(ctx)
	var lost []clientv3.LeaseID // lost sessions' leases: one may still hold the key
	for attempt := 0; ; attempt++ {
		if r.cli.Ctx().Err() != nil { // nothing sent through it can succeed
			r.unregistered(fmt.Errorf("discovery: %w", rpc.ErrClientClosed))
			return
		}
		sctx, cancel := context.WithTimeout(ctx, retry.AttemptTimeout)
		s, err := lockstep.NewSession(sctx, r.cli, lockstep.WithTTL(r.o.ttl))
		cancel()
		if err == nil {
			err = r.serve(ctx, s, &lost, &sub, &attempt)
			// Lost or closed: the lease is revoked below or taken over
			// by the next session, so that watchers do not see the
			// instance flap.
			s.CloseWithoutRevoke()
			if ctx.Err() != nil {
				r.revoke(append(lost, s.Lease())...)
				return
			}
			lost = append(lost, s.Lease())
		}
		if ctx.Err() != nil {
			r.revoke(lost...)
			return
		}
		r.unregistered(err)
		retry.Pause(ctx, reregister.Delay(attempt), nil)
	}
}

// serve writes the instance under s and keeps it written until s ends or
// ctx ends: again after each Update, and at once if the key is changed or
// deleted from outside.
func (r *Registration) serve(ctx context.Context, s *lockstep.Session, lost *[]clientv3.LeaseID, sub *<-chan cache.Update, attempt *int) error {
	var (
		written string // the value etcd holds for us
		at      int64  // and the revision it was written at
		dirty   = true
		again   <-chan time.Time
	)
	for {
		if dirty {
			dirty, again = false, nil
			gen, in := r.target()
			v := in.encode()
			rev, err := r.write(ctx, s, *lost, v, at)
			switch {
			case err == nil:
				written, at, *attempt = v, rev, 0
				r.registered(gen, s.Lease())
				if len(*lost) > 0 {
					r.revoke(*lost...) // the key is ours now
					*lost = nil
				}
			case ctx.Err() != nil || s.Err() != nil || errors.Is(err, lockstep.ErrSessionLost):
				return err // a lease revoked from outside ends the session now
			default: // the key is another's, or etcd refused: try again later
				written, at = "", 0
				r.unregistered(err)
				again = time.After(reregister.Delay(*attempt))
				*attempt++
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.Done():
			return s.Err()
		case <-r.poke:
			dirty = true
		case <-again:
			dirty = true
		case u, ok := <-*sub:
			if !ok {
				*sub = nil // the cache stopped; the session still guards the key
				continue
			}
			kv, ok := u.Snapshot.Get(r.key)
			switch {
			case at == 0 && !ok:
				dirty = true // the key we waited for is free
			case at != 0 && u.Revision() >= at && (!ok || kv.Lease != int64(s.Lease()) || kv.Value != written):
				dirty = true // changed or deleted from outside: repair it
			}
		}
	}
}

// write puts v under the instance's key with s's lease. It never creates
// a key without a lease (the lease is checked by etcd) nor overwrites
// another registration's: it creates the key, or replaces it as it read
// it if it holds s's lease, a lost session's or none. at is the revision of our
// last write under s, if any: the first try assumes the key is still so. Each Txn reads the key when its guard
// fails, so a retry after a lost answer sees what the lost attempt did.
func (r *Registration) write(ctx context.Context, s *lockstep.Session, lost []clientv3.LeaseID, v string, at int64) (int64, error) {
	lease := s.Lease()
	guard := clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0)
	if at != 0 { // as we last wrote it, most likely: one transaction
		guard = clientv3.Compare(clientv3.ModRevision(r.key), "=", at)
	}
	for {
		res, err := rpc.Commit(ctx, r.cli, s, rpc.Txn{
			If:   []clientv3.Cmp{guard},
			Then: []clientv3.Op{clientv3.OpPut(r.key, v, clientv3.WithLease(lease))},
			Else: []clientv3.Op{clientv3.OpGet(r.key)},
		})
		if err != nil {
			return 0, err
		}
		if res.Succeeded {
			return res.Header.Revision, nil
		}
		kvs := res.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			guard = clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0)
			continue
		}
		kv := kvs[0]
		switch l := clientv3.LeaseID(kv.Lease); {
		case l == lease && string(kv.Value) == v:
			return kv.ModRevision, nil // as we want it: a lost answer's work, or nothing to do
		case l == lease || l == 0 || slices.Contains(lost, l):
			// Ours, our lost session's, or written from outside without
			// a lease (no live registration): take it over as read.
			guard = clientv3.Compare(clientv3.ModRevision(r.key), "=", kv.ModRevision)
		default:
			return 0, fmt.Errorf("%w: %s is held by lease %x", ErrIDInUse, r.key, kv.Lease)
		}
	}
}

// revoke ends leases of this registration, which deletes the key they
// hold. Like every cleanup it runs under a bound of its own
// (retry.CleanupTimeout), whatever became of the caller's ctx; a lease it
// cannot revoke expires on its own.
func (r *Registration) revoke(leases ...clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
	defer cancel()
	for _, l := range leases {
		if l != 0 {
			r.cli.Revoke(ctx, l)
		}
	}
}

// target returns what etcd should hold now, and its generation.
func (r *Registration) target() (int, Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wantGen, r.want
}

func (r *Registration) registered(gen int, lease clientv3.LeaseID) {
	r.mu.Lock()
	was := r.doneGen >= 0
	r.doneGen, r.lease, r.lastErr = gen, lease, nil
	r.signal()
	r.mu.Unlock()
	r.setHealth()
	if !was {
		r.notify(Event{Registered: true, Lease: lease})
	}
}

func (r *Registration) unregistered(err error) {
	if err == nil {
		err = lockstep.ErrSessionLost
	}
	r.mu.Lock()
	was := r.doneGen >= 0
	r.doneGen, r.lease, r.lastErr = -1, 0, err
	r.signal()
	r.mu.Unlock()
	r.setHealth()
	if was {
		r.notify(Event{Err: err})
	}
}

// signal wakes waiters; r.mu is held.
func (r *Registration) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Registration) notify(e Event) {
	if r.o.onChange != nil {
		r.o.onChange(e)
	}
}

// setHealth sets the health status: SERVING only while registered and
// neither draining nor closed.
func (r *Registration) setHealth() {
	if r.o.health == nil {
		return
	}
	r.mu.Lock()
	serving := r.doneGen >= 0 && r.want.Status == Serving && !r.closed
	r.mu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range r.o.names {
		r.o.health.SetServingStatus(name, st)
	}
}
