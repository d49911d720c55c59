package leaderjob

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/ctxs"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// Job is the work done while leading. ctx is cancelled when leadership is
// lost or Run's ctx ends; the job should return promptly then. t is the
// term: fence writes with t.IsOwner() or t.Token(), announce with
// t.Proclaim. What its return value means is set by WithPolicy.
type Job func(ctx context.Context, t *election.Term) error

// Runner campaigns for an election and runs a job while it leads. Make one
// with New; it is safe for concurrent use, and one Run runs at a time.
type Runner struct {
	cli    *clientv3.Client
	prefix string
	job    Job
	o      options
	obs    *election.Observer

	running atomic.Bool
	term    atomic.Pointer[election.Term] // the current term while a job may run
}

// New returns a runner of job for the election named by prefix, on cli. It
// does no I/O. Errors: lockstep.ErrNilClient, lockstep.ErrInvalidPrefix,
// ErrNilJob, and the option errors (ErrInvalidIdentity,
// lockstep.ErrInvalidTTL, ErrInvalidBackoff, ErrInvalidPolicy).
func New(cli *clientv3.Client, prefix string, job Job, opts ...Option) (*Runner, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("leaderjob: %w", err)
	}
	if job == nil {
		return nil, ErrNilJob
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	obs, err := election.NewObserver(cli, prefix)
	if err != nil {
		return nil, err
	}
	return &Runner{cli: cli, prefix: prefix, job: job, o: o, obs: obs}, nil
}

// IsLeader reports whether this runner holds a term now. It turns false as
// soon as the term ends, before the job has returned.
func (r *Runner) IsLeader() bool {
	t := r.term.Load()
	return t != nil && t.Err() == nil
}

// Leader returns the election's current leader, whoever it is, or an error
// wrapping election.ErrNoLeader. One Range.
func (r *Runner) Leader(ctx context.Context) (election.Leader, error) {
	return r.obs.Leader(ctx)
}

// Run campaigns and, each time it wins, runs the job while it leads. When
// the job returns or leadership ends it acts as the Policy says: resign and
// return, run the job again, or campaign again. It waits for the job to
// return before it campaigns again, and makes a new session when the old
// one is lost.
//
// Run returns nil when a job finished under StopWhenDone. Otherwise it
// returns when ctx ends, with ctx.Err(), after cancelling the job, waiting
// for it and resigning, so the next candidate takes over at once; with an
// error if the etcd client is closed under it; or with etcd's error if
// etcd refuses the runner on who is asking (permission denied,
// authentication), which asking again would not change. A second Run
// while one is in progress returns ErrRunning.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	if r.o.onNewLeader != nil {
		stop := r.watchLeaders(ctx)
		defer stop()
	}

	var s *lockstep.Session
	// A successor checks whether we resigned by asking whether our lease
	// still exists (see WithSettle). So a Run that returns right after a
	// resign leaves the lease, which no longer holds anything, to expire:
	// a revoke could beat the successor's question and cost it the settle
	// delay. Otherwise closing revokes, which removes whatever is left.
	resigned := false
	closeSession := func() {
		switch {
		case s == nil:
		case resigned:
			s.CloseWithoutRevoke()
		default:
			s.Close()
		}
		s = nil
	}
	defer closeSession()
	failures := 0
	pause := func(err error) {
		failures++
		r.pause(ctx, failures, err, nil)
	}
	for ctx.Err() == nil {
		if err := r.cli.Ctx().Err(); err != nil {
			return fmt.Errorf("leaderjob: etcd client closed: %w", err)
		}
		if s == nil {
			var err error
			if s, err = r.newSession(ctx); err != nil {
				if retry.Refused(err) {
					return fmt.Errorf("leaderjob: %s: %w", r.prefix, err)
				}
				pause(err)
				continue
			}
		}
		resigned = false
		e, err := election.New(s, r.prefix)
		if err != nil { // the session ended since: replace it
			closeSession()
			continue
		}
		t, err := e.Campaign(ctx, r.o.identity)
		if err != nil {
			if retry.Refused(err) {
				// Asking again changes nothing until an operator acts.
				return fmt.Errorf("leaderjob: %w", err)
			}
			if errors.Is(err, lockstep.ErrSessionLost) || s.Err() != nil {
				closeSession()
			} else if ctx.Err() == nil {
				pause(err)
			}
			continue
		}

		var (
			out    outcome
			stuck  bool
			jobErr error
		)
		out, resigned, stuck, jobErr = r.lead(ctx, t)
		if stuck || s.Err() != nil || errors.Is(t.Err(), lockstep.ErrSessionLost) {
			// The resign did not get through, or the lease is gone (the
			// term can know before the session does): closing the session
			// removes our key; a new one is made for the next campaign.
			closeSession()
		}
		switch out {
		case finished:
			return nil
		case failed:
			pause(jobErr)
		default:
			failures = 0
		}
	}
	return ctx.Err()
}

// pause backs off after the n-th failure in a row, err, telling
// WithOnBackoff's function first. It ends early if ctx ends or stop closes.
func (r *Runner) pause(ctx context.Context, n int, err error, stop <-chan struct{}) {
	d := r.o.backoff(n)
	if r.o.onBackoff != nil {
		r.o.onBackoff(d, err)
	}
	retry.Pause(ctx, d, stop)
}

// newSession makes a session, giving up after one TTL: a server that
// cannot grant a lease in that time is retried after a back-off.
func (r *Runner) newSession(ctx context.Context) (*lockstep.Session, error) {
	sctx, cancel := context.WithTimeout(ctx, r.o.ttl)
	defer cancel()
	return lockstep.NewSession(sctx, r.cli, lockstep.WithTTL(r.o.ttl))
}

// outcome is how a term ended, from Run's point of view.
type outcome int

const (
	lost     outcome = iota // leadership ended under the job, or Run's ctx ended
	finished                // the job finished (StopWhenDone)
	failed                  // the job returned an error: back off
	yielded                 // the job returned nil under Recampaign
)

// lead runs the job under t as the policy says, then resigns if t still
// holds. It reports how the term ended, whether it resigned, whether a
// resign did not get through (the session then deletes the key, unless it
// is closed first), and the last job's error.
func (r *Runner) lead(ctx context.Context, t *election.Term) (out outcome, resigned, stuck bool, jobErr error) {
	r.term.Store(t)
	if r.o.onElected != nil {
		r.o.onElected(t)
	}
	out = lost
	if r.settle(ctx, t) {
		out, jobErr = r.work(ctx, t)
	}
	r.term.Store(nil)
	if t.Err() == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retry.CleanupTimeout)
		resigned = t.Resign(rctx) == nil // if not, Run closes the session, which removes the key
		stuck = !resigned
		cancel()
	}
	if r.o.onStopped != nil {
		r.o.onStopped(t, jobErr)
	}
	return out, resigned, stuck, jobErr
}

// work runs the job under t as the policy says, until a job's return or
// the end of t or ctx says to stop. It returns how the term ended and the
// last job's error.
func (r *Runner) work(ctx context.Context, t *election.Term) (outcome, error) {
	for failures := 0; ; {
		interrupted, jobErr := r.runJob(ctx, t)
		if !interrupted && jobErr == nil && r.o.policy == StopWhenDone {
			return finished, jobErr
		}
		if ctx.Err() != nil || t.Err() != nil {
			return lost, jobErr
		}
		if r.o.policy == RunAgain {
			if jobErr == nil {
				failures = 0
				continue
			}
			failures++
			r.pause(ctx, failures, jobErr, t.Done())
			if ctx.Err() != nil || t.Err() != nil {
				return lost, jobErr
			}
			continue
		}
		if jobErr == nil {
			return yielded, nil
		}
		return failed, jobErr
	}
}

// settle waits, before a term's first job, if the predecessor did not
// resign: see WithSettle. A predecessor that is not known (the candidates
// ahead went close together) or whose check fails counts as "did not
// resign". It reports whether the job may start: false if t or ctx ended
// meanwhile.
func (r *Runner) settle(ctx context.Context, t *election.Term) bool {
	pred, ok := t.Predecessor()
	if !ok || r.o.settle == 0 {
		return true
	}
	if pred.Token != 0 && r.leaseAlive(ctx, t, pred.Lease) {
		return true
	}
	return retry.Pause(ctx, r.o.settle, t.Done())
}

// leaseAlive asks whether lease still exists, giving up after the settle
// delay or when t ends.
func (r *Runner) leaseAlive(ctx context.Context, t *election.Term, lease clientv3.LeaseID) bool {
	tctx, cancel := context.WithTimeout(ctx, r.o.settle)
	defer cancel()
	cctx, stop := ctxs.EndWith(tctx, t.Done(), nil)
	defer stop()
	resp, err := r.cli.TimeToLive(cctx, lease)
	return err == nil && resp.TTL > 0
}

// runJob runs the job once with a ctx cancelled when t ends or ctx ends,
// and reports whether that ctx was cancelled by the time the job returned.
func (r *Runner) runJob(ctx context.Context, t *election.Term) (interrupted bool, err error) {
	jctx, stop := ctxs.EndWith(ctx, t.Done(), nil)
	defer stop()
	err = r.job(jctx, t)
	return jctx.Err() != nil, err
}

// watchLeaders calls the OnNewLeader callback for each new leader until
// stop is called.
func (r *Runner) watchLeaders(ctx context.Context) (stop func()) {
	octx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for ld := range r.obs.Observe(octx) {
			if ld.Token != 0 && ld.Token != last {
				last = ld.Token
				r.o.onNewLeader(ld)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
