// Package rpc is how every lockstep package talks to etcd. It handles the
// two facts of a network once, for everyone:
//
//   - A request can take effect although its caller hears only an error (a
//     broken connection, a timeout). Every attempt is bounded (by
//     retry.AttemptTimeout, the caller's ctx and the session), errors that
//     may pass are retried with backoff, and Commit says when an earlier
//     attempt may have been applied. The transactions are written so that
//     the answer to a retry tells what the earlier attempt did: each one
//     reads, in the branch its guard fails into, the key that identifies
//     it (its own key by name and create revision, or a nonce it wrote).
//   - A cleanup can fail while the session lives on. Cleanup tries under
//     its own bounded context and hands what it cannot finish to the
//     session, which keeps trying until etcd answers or the session ends.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/link"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// InFlight is how long a request whose answer never came may still be
// applied: the server's own request timeout (5 s plus two election
// timeouts) with room to spare. A cleanup after such a write looks again
// once this has passed (Cleanup.Recheck).
const InFlight = 10 * time.Second

// ErrClientClosed is returned when the etcd client was closed: nothing
// sent through it can succeed any more.
var ErrClientClosed = errors.New("etcd client closed")

// Do calls attempt until it returns nil or an error that will not pass.
// Each attempt's ctx ends after retry.AttemptTimeout, when ctx ends, and,
// if s is not nil, when the session ends. Between attempts it waits with
// retry.Default's backoff.
//
// It returns ctx.Err() itself if ctx ended; an error wrapping the
// session's Err if the session ended, or lockstep.ErrSessionLost if etcd
// no longer knows its lease; ErrClientClosed; or the error that will not
// pass (permission denied, a full database, ...).
func Do(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, attempt func(ctx context.Context) error) error {
	_, err := do(ctx, cli, s, attempt)
	return err
}

// do is Do that also reports whether an attempt failed before the last
// one: its request may have been applied.
func do(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, attempt func(ctx context.Context) error) (retried bool, err error) {
	var sessionCtx context.Context
	if s != nil {
		sessionCtx = link.Context(s)
	}
	for n := 0; ; n++ {
		if err := ended(ctx, cli, s); err != nil {
			return retried, err
		}
		actx, cancel := context.WithTimeout(ctx, retry.AttemptTimeout)
		stop := func() bool { return false }
		if sessionCtx != nil {
			stop = context.AfterFunc(sessionCtx, cancel)
		}
		err = attempt(actx)
		timedOut := actx.Err() != nil // before cancel, which ends it too
		stop()
		cancel()
		if err == nil {
			return retried, nil
		}
		if err := ended(ctx, cli, s); err != nil {
			return true, err
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && s != nil {
			// Refused as a whole; and no earlier attempt, with the lease
			// gone, can still add a key to it.
			return false, fmt.Errorf("%w: lease %x not found on the server", lockstep.ErrSessionLost, int64(s.Lease()))
		}
		// An attempt that ran out of its own time is worth another: the
		// next goes to another member if this one is cut off.
		if !retry.Transient(err) && !timedOut {
			return retried, err // refused: this attempt was not applied
		}
		retried = true
		var stopped <-chan struct{}
		if s != nil {
			stopped = s.Done()
		}
		if !retry.Pause(ctx, retry.Delay(n), stopped) {
			return true, ended(ctx, cli, s)
		}
	}
}

// ended says why no more attempts can be made, if that is so.
func ended(ctx context.Context, cli *clientv3.Client, s *lockstep.Session) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s != nil && s.Err() != nil:
		return s.Err()
	case cli.Ctx().Err() != nil:
		return ErrClientClosed
	}
	return nil
}

// Txn is one etcd transaction. Its guard (If) must make it safe to apply
// twice, and its Else branch must read whatever tells the caller, after a
// retry, whether an earlier attempt was applied.
type Txn struct {
	If   []clientv3.Cmp
	Then []clientv3.Op
	Else []clientv3.Op
}

// Result is the answer to a committed Txn.
type Result struct {
	*clientv3.TxnResponse // nil if Commit failed
	// Retried says that an attempt failed without an answer: it may have
	// been applied (a guard that fails now may fail because of it), or,
	// if Commit failed, may still be.
	Retried bool
}

// Commit commits t with Do's retries. On failure the Result says whether
// a request was sent without an answer.
func Commit(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, t Txn) (Result, error) {
	var resp *clientv3.TxnResponse
	retried, err := do(ctx, cli, s, func(ctx context.Context) error {
		var err error
		resp, err = cli.Txn(ctx).If(t.If...).Then(t.Then...).Else(t.Else...).Commit()
		return err
	})
	if err != nil {
		return Result{Retried: retried}, err
	}
	return Result{TxnResponse: resp, Retried: retried}, nil
}

// Get reads key with Do's retries.
func Get(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := Do(ctx, cli, s, func(ctx context.Context) error {
		var err error
		resp, err = cli.Get(ctx, key, opts...)
		return err
	})
	return resp, err
}

// Cleanup is a guarded transaction that removes what a call left behind;
// see Sweep.
type Cleanup = link.Cleanup

// Sweep runs c now, under a context of its own bounded by
// retry.CleanupTimeout (the caller's has often ended), and hands it to s
// if it does not get through: the session keeps trying until etcd
// answers or the session ends. c.Done runs once the cleanup is over. It
// reports whether the cleanup is over when it returns.
//
// Without a session, what cannot be done now is dropped. A session's
// cleanup removes only what is under its lease, which goes with the lease:
// once the session has ended, Sweep neither starts the cleanup nor waits
// for one in flight (cut off from etcd, that wait would hold the caller
// for CleanupTimeout past the session's loss).
func Sweep(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, c Cleanup) bool {
	if s != nil && s.Err() != nil {
		if c.Done != nil {
			c.Done()
		}
		return true
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retry.CleanupTimeout)
	defer cancel()
	if s != nil {
		defer context.AfterFunc(link.Context(s), cancel)()
	}
	res, err := Commit(cctx, cli, nil, Txn{If: c.If, Then: c.Then, Else: c.Else})
	over := true
	if err == nil && c.Next != nil {
		for _, next := range c.Next(res.TxnResponse) {
			over = Sweep(ctx, cli, s, next) && over
		}
		c.Next = nil
	}
	switch {
	case (err == nil && c.Recheck == 0) || errors.Is(err, rpctypes.ErrLeaseNotFound) ||
		s == nil || s.Err() != nil || cli.Ctx().Err() != nil:
		if c.Done != nil {
			c.Done()
		}
		return over
	default:
		link.Sweep(s, c)
		return false
	}
}

// Gone explains why a key of session s that we did not delete is gone: the
// session's lease ended (the session may not know yet, so the server is
// asked, under a bounded context of its own), or someone else deleted it.
// It returns an error wrapping lockstep.ErrSessionLost (or the session's
// own Err) or lockstep.ErrLost.
func Gone(s *lockstep.Session, key string) error {
	if err := s.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
	defer cancel()
	resp, err := s.Client().TimeToLive(ctx, s.Lease())
	if err == nil && resp.TTL <= 0 {
		return fmt.Errorf("%w: lease %x no longer exists", lockstep.ErrSessionLost, int64(s.Lease()))
	}
	return fmt.Errorf("%w: key %s deleted", lockstep.ErrLost, key)
}

// Watch starts a watch that ends when ctx ends or, if s is not nil, when
// the session ends, and returns it with the function that ends it, which
// the caller must call. clientv3's Watch does not return until the watch
// stream is open, which takes as long as etcd cannot be reached: a watch
// whose ctx outlived the session would hold its caller past the session's
// loss, however the caller selects on the channel afterwards.
func Watch(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, key string, opts ...clientv3.OpOption) (clientv3.WatchChan, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	stop := func() bool { return false }
	if s != nil {
		stop = context.AfterFunc(link.Context(s), cancel)
	}
	ch := cli.Watch(wctx, key, opts...)
	return ch, func() {
		stop()
		cancel()
	}
}
