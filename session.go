package lockstep

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
)

const (
	// DefaultTTL is the lease TTL of a session made without WithTTL.
	DefaultTTL = 10 * time.Second

	// MinTTL is the smallest TTL a session accepts: the lease minimum of an
	// etcd server with the default 1s election timeout. A server raises a
	// smaller TTL silently; we refuse it instead so that the TTL a caller
	// reasons about is the one that applies.
	MinTTL = 2 * time.Second

	// MinMargin is the smallest default safety margin; see WithMargin.
	MinMargin = time.Second
)

// Session is one etcd lease kept alive in the background. Everything a
// primitive acquires through a session (lock keys, permits, candidacies,
// queue claims, barrier registrations) is attached to that lease, so a
// crashed process releases all of it when the lease expires.
//
// Done closes before the server can expire the lease: the session records
// when each successful keepalive was sent, and the lease is certainly alive
// until that instant plus the TTL. If no renewal succeeds, Done closes at
// sent + TTL - margin. A holder that stops work when Done closes has stopped
// before anyone else can be granted what it held, up to the difference in
// clock rates between this process and the etcd leader over one TTL.
// Closing the session's etcd client ends it at once (ErrSessionLost): it
// could neither renew the lease nor act on what it owns.
//
// A key that a primitive could not clean up (its delete failed while the
// session lives on: a cancelled wait during a network outage) is handed to
// the session, which keeps deleting it, with backoff, until etcd answers
// or the session ends; the lease removes what is left then.
//
// A Session is safe for concurrent use.
type Session struct {
	cli    *clientv3.Client
	lease  clientv3.LeaseID
	ttl    time.Duration
	margin time.Duration

	done     chan struct{}
	ctx      context.Context // ends with the session, with its Err as the cause
	cancel   context.CancelCauseFunc
	stopLoop context.CancelFunc
	loopDone chan struct{}
	expiry   *time.Timer
	reserved reservations
	janitor  janitor

	mu        sync.Mutex
	err       error
	deadline  time.Time // Done closes at this instant unless a renewal succeeds
	leaseGone bool      // the server said the lease no longer exists

	closeOnce sync.Once
	closeErr  error
}

// SessionOption configures NewSession.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	ttl    time.Duration
	margin time.Duration // zero: derived from ttl
}

// WithTTL sets the lease TTL. Default DefaultTTL (10s). It must be a whole
// number of seconds and at least MinTTL; anything else makes NewSession
// return ErrInvalidTTL.
func WithTTL(ttl time.Duration) SessionOption {
	return func(o *sessionOptions) { o.ttl = ttl }
}

// WithMargin sets how long before the lease could expire on the server Done
// closes when renewals fail. It must cover the time a holder needs to notice
// Done and stop, plus clock-rate drift over one TTL. Default: the larger of
// MinMargin (1s) and a tenth of the TTL. It must be positive and at most half
// the TTL, or NewSession returns ErrInvalidMargin.
func WithMargin(margin time.Duration) SessionOption {
	return func(o *sessionOptions) {
		o.margin = margin
		if margin == 0 {
			o.margin = -1 // zero is not "default" when asked for explicitly
		}
	}
}

// CheckTTL returns an error wrapping ErrInvalidTTL if NewSession would
// refuse ttl: it must be a whole number of seconds, at least MinTTL. It
// lets a caller refuse a bad setting before it connects to etcd.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl < MinTTL || ttl%time.Second != 0 {
		return fmt.Errorf("%w: %v (want a whole number of seconds, at least %v)", ErrInvalidTTL, ttl, MinTTL)
	}
	return nil
}

func (o *sessionOptions) validate() error {
	if err := CheckTTL(o.ttl); err != nil {
		return err
	}
	if o.margin == 0 {
		o.margin = max(MinMargin, o.ttl/10)
	}
	if o.margin <= 0 || o.margin > o.ttl/2 {
		return fmt.Errorf("%w: %v (want positive and at most half the ttl %v)", ErrInvalidMargin, o.margin, o.ttl)
	}
	return nil
}

// NewSession grants a lease and starts keeping it alive. It returns when
// the lease is granted or ctx ends (then with ctx's error); ctx is not used
// after NewSession returns. Close the session to release everything it owns.
func NewSession(ctx context.Context, cli *clientv3.Client, opts ...SessionOption) (*Session, error) {
	if cli == nil {
		return nil, ErrNilClient
	}
	o := sessionOptions{ttl: DefaultTTL}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}

	sent := time.Now()
	resp, err := cli.Grant(ctx, int64(o.ttl/time.Second))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lockstep: grant lease: %w", ctx.Err())
		}
		return nil, fmt.Errorf("lockstep: grant lease: %w", err)
	}

	loopCtx, stop := context.WithCancel(context.Background())
	sctx, cancel := context.WithCancelCause(context.Background())
	s := &Session{
		cli:      cli,
		lease:    resp.ID,
		ttl:      o.ttl,
		margin:   o.margin,
		done:     make(chan struct{}),
		ctx:      sctx,
		cancel:   cancel,
		stopLoop: stop,
		loopDone: make(chan struct{}),
		deadline: sent.Add(time.Duration(resp.TTL)*time.Second - o.margin),
	}
	s.expiry = time.AfterFunc(time.Until(s.deadline), s.expire)
	go s.keepAlive(loopCtx)
	return s, nil
}

// Client returns the etcd client the session uses.
func (s *Session) Client() *clientv3.Client { return s.cli }

// Lease returns the session's lease ID.
func (s *Session) Lease() clientv3.LeaseID { return s.lease }

// TTL returns the lease TTL the session asked for.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done is closed when the session is lost or closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session is alive, then ErrSessionLost (possibly
// wrapped with the reason) or ErrSessionClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The expiry timer may fire late on a busy machine; whoever asks after the
	// deadline learns the truth now.
	if s.err == nil && !time.Now().Before(s.deadline) {
		s.endLocked(fmt.Errorf("%w: no keepalive succeeded in time", ErrSessionLost))
	}
	return s.err
}

// Close stops the keepalives and revokes the lease, which releases at once
// everything the session owns. It waits for the revoke at most the smaller
// of the TTL and 5s; if the revoke fails, or cannot be sent because the
// client is closed, the lease still expires on its own. Every handle of
// the session ends with ErrSessionClosed.
// Close is idempotent and returns the same result each time.
func (s *Session) Close() error { return s.close(true) }

// CloseWithoutRevoke ends the session like Close but leaves its lease to
// expire on the server, TTL after the last renewal, instead of revoking
// it. It is for a session whose owner gave up everything it held
// explicitly and wants its lease to say so for a while: leaderjob's
// successor takes a live lease of its predecessor for a sign that it
// resigned. Anything still attached to the lease stays until it expires.
// Like Close it is idempotent; the first of the two called decides.
func (s *Session) CloseWithoutRevoke() error { return s.close(false) }

func (s *Session) close(revoke bool) error {
	s.closeOnce.Do(func() {
		s.end(ErrSessionClosed)
		s.stopLoop()
		<-s.loopDone
		s.expiry.Stop()
		s.waitJanitor()

		s.mu.Lock()
		gone := s.leaseGone
		s.mu.Unlock()
		if gone || !revoke {
			return
		}
		if err := s.cli.Ctx().Err(); err != nil {
			// A closed client would spend seconds failing to send it.
			s.closeErr = fmt.Errorf("lockstep: revoke lease %x: etcd client closed: %w", int64(s.lease), err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(s.ttl, retry.CleanupTimeout))
		defer cancel()
		_, err := s.cli.Revoke(ctx, s.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.closeErr = fmt.Errorf("lockstep: revoke lease %x: %w", int64(s.lease), err)
		}
	})
	return s.closeErr
}

// keepAlive renews the lease until the session ends. It renews three times
// per usable window (TTL - margin) so that one lost keepalive does not lose
// the session, and retries a failed renewal sooner.
func (s *Session) keepAlive(ctx context.Context) {
	defer close(s.loopDone)
	interval := (s.ttl - s.margin) / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-s.cli.Ctx().Done():
			// Nothing can renew the lease or act on what the session
			// owns any more: end now rather than at the deadline. The
			// lease itself lasts until the server expires it.
			s.end(fmt.Errorf("%w: etcd client closed", ErrSessionLost))
			return
		case <-timer.C:
		}
		sent := time.Now()
		// No renewal is worth waiting for past the deadline: by then the
		// session has ended. Nor longer than one interval: a member cut off
		// from its peers holds a keepalive until its own request timeout
		// (about 7s), which would spend the whole window on one member
		// while the others could renew the lease; a retry goes to the next.
		deadline := s.currentDeadline()
		if d := sent.Add(interval); d.Before(deadline) {
			deadline = d
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		resp, err := s.cli.KeepAliveOnce(rctx, s.lease)
		cancel()
		switch {
		case err == nil:
			s.renewed(sent.Add(time.Duration(resp.TTL)*time.Second - s.margin))
			timer.Reset(interval)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.mu.Lock()
			s.leaseGone = true
			s.endLocked(fmt.Errorf("%w: lease %x not found on the server", ErrSessionLost, int64(s.lease)))
			s.mu.Unlock()
			return
		default:
			// A quarter of the interval, jittered so that many sessions
			// that lost the same server do not retry in step.
			timer.Reset(max(retry.Jitter(interval/4), 20*time.Millisecond))
		}
	}
}

func (s *Session) currentDeadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// renewed moves the deadline forward; a renewal that arrives after the
// session ended does not revive it.
func (s *Session) renewed(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && deadline.After(s.deadline) {
		s.deadline = deadline
	}
}

// expire runs when the expiry timer fires. Renewals only move the deadline,
// so the timer re-arms itself if one came in since it was set.
func (s *Session) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if d := time.Until(s.deadline); d > 0 {
		s.expiry.Reset(d)
		return
	}
	s.endLocked(fmt.Errorf("%w: no keepalive succeeded in time", ErrSessionLost))
}

func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(err)
}

func (s *Session) endLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	close(s.done)
	s.cancel(err)
	s.reserved.clear()
}
