package leaderjob

import (
	"fmt"
	"os"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
)

// Policy says what a job's return means while the runner still leads. A
// job that returns because its ctx was cancelled (leadership lost, Run's
// ctx ended) is not judged by its return value: the runner campaigns again,
// or Run returns.
type Policy int

const (
	// StopWhenDone: a job that returns nil has finished the work: the
	// runner resigns and Run returns nil. A job that returns an error makes
	// the runner resign, back off and campaign again. The default.
	StopWhenDone Policy = iota

	// RunAgain: a job that returns is started again under the same term,
	// after a back-off if it returned an error; leadership is kept. Run
	// returns only when its ctx ends.
	RunAgain

	// Recampaign: a job that returns makes the runner resign and campaign
	// again, at the back of the queue, so the other candidates get a turn;
	// after a back-off if it returned an error. Run returns only when its
	// ctx ends.
	Recampaign
)

func (p Policy) String() string {
	switch p {
	case StopWhenDone:
		return "StopWhenDone"
	case RunAgain:
		return "RunAgain"
	case Recampaign:
		return "Recampaign"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Defaults of the options.
const (
	DefaultTTL        = lockstep.DefaultTTL
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	DefaultSettle     = 250 * time.Millisecond
)

// Option configures New.
type Option func(*options)

type options struct {
	identity               string
	ttl                    time.Duration
	backoffMin, backoffMax time.Duration
	policy                 Policy
	settle                 time.Duration
	onElected              func(*election.Term)
	onStopped              func(*election.Term, error)
	onNewLeader            func(election.Leader)
	onBackoff              func(time.Duration, error)
}

// WithIdentity sets the value the runner campaigns with, which Leader and
// `etcdctl elect -l` show. Default: the host name and the process ID,
// "host-1234". It must not be empty (ErrInvalidIdentity).
func WithIdentity(id string) Option { return func(o *options) { o.identity = id } }

// WithTTL sets the TTL of the runner's sessions: how long after this
// process stops renewing (it crashed or is cut off) another candidate takes
// over. Default DefaultTTL (10s). It must be a whole number of seconds and
// at least lockstep.MinTTL (2s), or New returns lockstep.ErrInvalidTTL. The
// job's ctx is cancelled the session's margin (the larger of 1s and TTL/10)
// before the lease can expire.
func WithTTL(ttl time.Duration) Option { return func(o *options) { o.ttl = ttl } }

// WithBackoff sets the pause before campaigning again after a job error or
// a failed campaign or session: the n-th failure in a row waits a random
// duration between half and all of min(max, min·2ⁿ⁻¹). Default
// DefaultBackoffMin (100ms) to DefaultBackoffMax (5s). min must be
// positive and max at least min (ErrInvalidBackoff). Under RunAgain the
// same back-off applies before a failed job is started again.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// WithSettle sets how long a runner that takes over from a leader that
// did not resign (its lease is gone) waits before it starts the job, so
// that a connected old leader, which learns of its loss at about the same
// moment, stops its job first; a successor of a leader that resigned
// starts at once. It narrows a window, it does not close it: fence writes
// with the term's IsOwner or Token. docs/leaderjob.md has the reasoning.
// Default DefaultSettle (250ms); 0 turns it off; negative is
// ErrInvalidSettle.
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }

// WithPolicy sets what a job's return means. Default StopWhenDone.
func WithPolicy(p Policy) Option { return func(o *options) { o.policy = p } }

// WithOnElected sets a function called when the runner wins an election,
// before the job starts, from Run's goroutine.
func WithOnElected(f func(t *election.Term)) Option { return func(o *options) { o.onElected = f } }

// WithOnStopped sets a function called once per term when leadership is
// over: after the last job of the term returned and the runner resigned or
// lost the term (t.Err() says which). jobErr is what that job returned. It
// is called from Run's goroutine.
func WithOnStopped(f func(t *election.Term, jobErr error)) Option {
	return func(o *options) { o.onStopped = f }
}

// WithOnNewLeader sets a function called, while Run runs, each time a new
// leader is observed — another candidate or this runner — with its value
// (identity) and token. It is not called for Proclaims or while nobody
// leads. It is called from a goroutine of its own, one call at a time, and
// should return quickly: it holds back the next call. Setting it costs one
// watch on the election for as long as Run runs.
func WithOnNewLeader(f func(l election.Leader)) Option { return func(o *options) { o.onNewLeader = f } }

// WithOnBackoff sets a function called each time the runner backs off,
// before the pause, with its length and the failure behind it: a job's
// error (under RunAgain the job then runs again in the same term; under the
// other policies the runner has resigned and campaigns again), or a
// session or campaign that failed. It is called from Run's goroutine and
// should return quickly.
func WithOnBackoff(f func(pause time.Duration, err error)) Option {
	return func(o *options) { o.onBackoff = f }
}

func defaultOptions() options {
	return options{
		identity:   defaultIdentity(),
		ttl:        DefaultTTL,
		backoffMin: DefaultBackoffMin,
		backoffMax: DefaultBackoffMax,
		policy:     StopWhenDone,
		settle:     DefaultSettle,
	}
}

func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "pid"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

func (o *options) validate() error {
	switch {
	case o.identity == "":
		return ErrInvalidIdentity
	case o.ttl < lockstep.MinTTL || o.ttl%time.Second != 0:
		return fmt.Errorf("leaderjob: %w: %v (want a whole number of seconds, at least %v)", lockstep.ErrInvalidTTL, o.ttl, lockstep.MinTTL)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return fmt.Errorf("%w: min %v, max %v (want 0 < min <= max)", ErrInvalidBackoff, o.backoffMin, o.backoffMax)
	case o.policy < StopWhenDone || o.policy > Recampaign:
		return fmt.Errorf("%w: %v", ErrInvalidPolicy, o.policy)
	case o.settle < 0:
		return fmt.Errorf("%w: %v (want 0 or more)", ErrInvalidSettle, o.settle)
	}
	return nil
}
