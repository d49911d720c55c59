package leaderjob_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var errBoom = errors.New("boom")

func noop(context.Context, *election.Term) error { return nil }

func TestNewRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	tests := []struct {
		name   string
		cli    *clientv3.Client
		prefix string
		job    leaderjob.Job
		opts   []leaderjob.Option
		want   error
	}{
		{"nil client", nil, "/j", noop, nil, lockstep.ErrNilClient},
		{"empty prefix", cli, "", noop, nil, lockstep.ErrInvalidPrefix},
		{"two trailing slashes", cli, "/j//", noop, nil, lockstep.ErrInvalidPrefix},
		{"nil job", cli, "/j", nil, nil, leaderjob.ErrNilJob},
		{"empty identity", cli, "/j", noop, []leaderjob.Option{leaderjob.WithIdentity("")}, leaderjob.ErrInvalidIdentity},
		{"ttl under the minimum", cli, "/j", noop, []leaderjob.Option{leaderjob.WithTTL(time.Second)}, lockstep.ErrInvalidTTL},
		{"ttl not whole seconds", cli, "/j", noop, []leaderjob.Option{leaderjob.WithTTL(2500 * time.Millisecond)}, lockstep.ErrInvalidTTL},
		{"zero ttl", cli, "/j", noop, []leaderjob.Option{leaderjob.WithTTL(0)}, lockstep.ErrInvalidTTL},
		{"zero backoff", cli, "/j", noop, []leaderjob.Option{leaderjob.WithBackoff(0, time.Second)}, leaderjob.ErrInvalidBackoff},
		{"backoff max below min", cli, "/j", noop, []leaderjob.Option{leaderjob.WithBackoff(time.Second, time.Millisecond)}, leaderjob.ErrInvalidBackoff},
		{"unknown policy", cli, "/j", noop, []leaderjob.Option{leaderjob.WithPolicy(leaderjob.Policy(7))}, leaderjob.ErrInvalidPolicy},
		{"negative settle", cli, "/j", noop, []leaderjob.Option{leaderjob.WithSettle(-time.Millisecond)}, leaderjob.ErrInvalidSettle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := leaderjob.New(tt.cli, tt.prefix, tt.job, tt.opts...)
			if !errors.Is(err, tt.want) || r != nil {
				t.Fatalf("New: got (%v, %v), want (nil, %v)", r, err, tt.want)
			}
		})
	}
}

// stopped is what an OnStopped callback saw.
type stopped struct {
	token  int64
	reason error // t.Err()
	jobErr error
}

func (s stopped) String() string {
	return fmt.Sprintf("{token %d, ended by %v, job error %v}", s.token, s.reason, s.jobErr)
}

type callbacks struct {
	mu      sync.Mutex
	elected []int64
	stopped []stopped
}

func (c *callbacks) options() []leaderjob.Option {
	return []leaderjob.Option{
		leaderjob.WithOnElected(func(t *election.Term) {
			c.mu.Lock()
			c.elected = append(c.elected, t.Token())
			c.mu.Unlock()
		}),
		leaderjob.WithOnStopped(func(t *election.Term, jobErr error) {
			c.mu.Lock()
			c.stopped = append(c.stopped, stopped{t.Token(), t.Err(), jobErr})
			c.mu.Unlock()
		}),
	}
}

func TestRunStopsWhenJobDone(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli, rpc := testutil.CountingClient(t)
	prefix := testutil.Prefix(t)
	var cb callbacks
	var r *leaderjob.Runner
	var sawLeader election.Leader
	var wasLeader bool
	job := func(ctx context.Context, t *election.Term) error {
		wasLeader = r.IsLeader()
		sawLeader, _ = r.Leader(ctx)
		return nil
	}
	r = newRunner(t, cli, prefix, job, append(cb.options(), leaderjob.WithIdentity("node-a"))...)
	rpc.Reset()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run: got %v, want nil after the job finished", err)
	}
	// A lease, a campaign, the job's Leader, a resignation; no revoke: the
	// lease of a runner that resigned is left to expire, so that a
	// successor can tell it resigned.
	for _, c := range []struct {
		method string
		want   int
	}{{"LeaseGrant", 1}, {"Txn", 2}, {"Range", 1}, {"LeaseRevoke", 0}} {
		if got := rpc.Calls(c.method); got != c.want {
			t.Errorf("%s calls: got %d, want %d", c.method, got, c.want)
		}
	}
	if !wasLeader || sawLeader.Value != "node-a" {
		t.Fatalf("in the job: IsLeader %v, Leader %+v; want true and node-a", wasLeader, sawLeader)
	}
	if r.IsLeader() {
		t.Fatal("IsLeader after Run returned")
	}
	if len(cb.elected) != 1 || len(cb.stopped) != 1 || cb.stopped[0].token != cb.elected[0] {
		t.Fatalf("callbacks: elected %v, stopped %+v; want one term", cb.elected, cb.stopped)
	}
	if st := cb.stopped[0]; !errors.Is(st.reason, lockstep.ErrReleased) || st.jobErr != nil || st.token != sawLeader.Token {
		t.Fatalf("OnStopped: got %+v, want the term %d resigned and a nil job error", st, sawLeader.Token)
	}
	if _, err := r.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader after Run: got %v, want ErrNoLeader", err)
	}
}

func TestRunDefaultIdentity(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	var got election.Leader
	var r *leaderjob.Runner
	r = newRunner(t, cli, testutil.Prefix(t), func(ctx context.Context, _ *election.Term) (err error) {
		got, err = r.Leader(ctx)
		return err
	})
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s-%d", host, os.Getpid()); got.Value != want {
		t.Fatalf("identity: got %q, want %q", got.Value, want)
	}
}

// A failing job resigns, backs off and campaigns again: each attempt is a
// new term.
func TestRunRetriesFailedJob(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	var cb callbacks
	calls := 0
	job := func(ctx context.Context, t *election.Term) error {
		calls++
		if calls < 3 {
			return errBoom
		}
		return nil
	}
	var pauses []time.Duration
	opts := append(cb.options(), leaderjob.WithBackoff(time.Millisecond, 2*time.Millisecond),
		leaderjob.WithOnBackoff(func(d time.Duration, err error) {
			if !errors.Is(err, errBoom) {
				t.Errorf("backing off after %v, want the job's error", err)
			}
			pauses = append(pauses, d)
		}))
	r := newRunner(t, cli, testutil.Prefix(t), job, opts...)
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(pauses) != 2 || pauses[0] <= 0 || pauses[0] > time.Millisecond || pauses[1] <= 0 || pauses[1] > 2*time.Millisecond {
		t.Fatalf("pauses %v, want two within the backoff's bounds (1ms, then 2ms at most)", pauses)
	}
	if calls != 3 || len(cb.stopped) != 3 {
		t.Fatalf("job ran %d times in %d terms, want 3 and 3", calls, len(cb.stopped))
	}
	for i, st := range cb.stopped {
		wantErr := errBoom
		if i == 2 {
			wantErr = nil
		}
		if !errors.Is(st.jobErr, wantErr) || !errors.Is(st.reason, lockstep.ErrReleased) {
			t.Fatalf("term %d: got job error %v, ended by %v; want %v and resigned", i, st.jobErr, st.reason, wantErr)
		}
		if i > 0 && st.token <= cb.stopped[i-1].token {
			t.Fatalf("term %d token %d not above %d", i, st.token, cb.stopped[i-1].token)
		}
	}
}

// Under RunAgain a returning job is started again in the same term.
func TestRunAgainKeepsTheTerm(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	var cb callbacks
	var tokens []int64
	running := make(chan struct{})
	job := func(ctx context.Context, t *election.Term) error {
		tokens = append(tokens, t.Token())
		switch len(tokens) {
		case 1:
			return nil
		case 2:
			return errBoom
		}
		close(running)
		<-ctx.Done()
		return ctx.Err()
	}
	var backoffs []error
	opts := append(cb.options(), leaderjob.WithPolicy(leaderjob.RunAgain), leaderjob.WithBackoff(time.Millisecond, time.Millisecond),
		leaderjob.WithOnBackoff(func(_ time.Duration, err error) { backoffs = append(backoffs, err) }))
	rn := start(t, newRunner(t, cli, testutil.Prefix(t), job, opts...))
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("job not started a third time")
	}
	if err := rn.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: got %v, want context.Canceled", err)
	}
	if len(backoffs) != 1 || !errors.Is(backoffs[0], errBoom) {
		t.Fatalf("backed off after %v, want once after the job's error", backoffs)
	}
	if len(tokens) != 3 || tokens[0] != tokens[1] || tokens[1] != tokens[2] {
		t.Fatalf("tokens of the runs: %v, want three of the same term", tokens)
	}
	if len(cb.elected) != 1 || len(cb.stopped) != 1 || !errors.Is(cb.stopped[0].reason, lockstep.ErrReleased) {
		t.Fatalf("callbacks: elected %v, stopped %v; want one resigned term", cb.elected, cb.stopped)
	}
}

// Under Recampaign two runners take turns.
func TestRecampaignTakesTurns(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	var mu sync.Mutex
	var order []string
	enough := make(chan struct{})
	job := func(name string) leaderjob.Job {
		return func(ctx context.Context, t *election.Term) error {
			mu.Lock()
			order = append(order, name)
			if len(order) == 6 {
				close(enough)
			}
			mu.Unlock()
			// Yield only once the other runner queues, so turns alternate.
			for {
				resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
				if err != nil {
					return err
				}
				if resp.Count == 2 {
					return nil
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	opts := []leaderjob.Option{leaderjob.WithPolicy(leaderjob.Recampaign)}
	a := start(t, newRunner(t, cli, prefix, job("a"), opts...))
	waitKeys(t, ctx, cli, prefix, 1)
	b := start(t, newRunner(t, cli, prefix, job("b"), opts...))
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("fewer than 6 terms")
	}
	a.stop(t)
	b.stop(t)
	mu.Lock()
	defer mu.Unlock()
	for i, name := range order[:6] {
		if want := []string{"a", "b"}[i%2]; name != want {
			t.Fatalf("turns: got %v, want a and b alternating", order)
		}
	}
}

// Cancelling the leader's Run resigns: the next runner starts at once, and
// only after the leader's job saw its ctx end.
func TestCancelRunHandsOver(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	rec := newRecorder()
	var cbA callbacks
	a := start(t, newRunner(t, cli, prefix, rec.job("a"), cbA.options()...))
	ra := rec.next(t, ctx)
	b := start(t, newRunner(t, cli, prefix, rec.job("b")))
	waitKeys(t, ctx, cli, prefix, 2)
	if !a.r.IsLeader() || b.r.IsLeader() {
		t.Fatalf("IsLeader: a %v, b %v; want true, false", a.r.IsLeader(), b.r.IsLeader())
	}

	cancelled := time.Now()
	if err := a.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: got %v, want context.Canceled", err)
	}
	rb := rec.next(t, ctx)
	if rb.runner != "b" || rb.token <= ra.token {
		t.Fatalf("next run: %s with token %d, want b above %d", rb.runner, rb.token, ra.token)
	}
	if st := cbA.stopped; len(st) != 1 || !errors.Is(st[0].reason, lockstep.ErrReleased) {
		t.Fatalf("a's term: %+v, want resigned (not expired)", st)
	}
	rec.check(t)
	t.Logf("graceful handover: cancel to successor's job %v (a's job saw its ctx end after %v)",
		rb.start.Sub(cancelled), ra.end.Sub(cancelled))
}

func TestRunTwiceAtOnce(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	rec := newRecorder()
	rn := start(t, newRunner(t, cli, testutil.Prefix(t), rec.job("a")))
	rec.next(t, ctx)
	if err := rn.r.Run(ctx); !errors.Is(err, leaderjob.ErrRunning) {
		t.Fatalf("second Run: got %v, want ErrRunning", err)
	}
	rn.stop(t)
	// Once the first Run returned, Run may be called again.
	again := start(t, rn.r)
	rec.next(t, ctx)
	again.stop(t)
}

func TestOnNewLeader(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	rec := newRecorder()
	seen := make(chan election.Leader, 10)
	a := start(t, newRunner(t, cli, prefix, rec.job("a"), leaderjob.WithIdentity("a")))
	ra := rec.next(t, ctx)
	b := start(t, newRunner(t, cli, prefix, rec.job("b"), leaderjob.WithIdentity("b"),
		leaderjob.WithOnNewLeader(func(l election.Leader) { seen <- l })))
	waitKeys(t, ctx, cli, prefix, 2)
	a.stop(t)
	rb := rec.next(t, ctx)
	for _, want := range []*run{ra, rb} {
		select {
		case l := <-seen:
			if l.Value != want.runner || l.Token != want.token {
				t.Fatalf("OnNewLeader: got %+v, want %s with token %d", l, want.runner, want.token)
			}
		case <-ctx.Done():
			t.Fatalf("OnNewLeader not called for %s", want.runner)
		}
	}
	b.stop(t)
}

// A runner whose session is killed (its lease revoked from outside) stops
// its job, makes a new session and leads again.
func TestRunReplacesLostSession(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	rec := newRecorder()
	var cb callbacks
	rn := start(t, newRunner(t, cli, testutil.Prefix(t), rec.job("a"), cb.options()...))
	first := rec.next(t, ctx)
	if _, err := cli.Revoke(ctx, first.lease); err != nil {
		t.Fatal(err)
	}
	second := rec.next(t, ctx)
	if second.lease == first.lease || second.token <= first.token {
		t.Fatalf("second term: lease %x token %d; want a new lease and a token above %d", second.lease, second.token, first.token)
	}
	rec.ended(t, ctx, first)
	if st := cb.stopped; len(st) < 1 || !errors.Is(st[0].reason, lockstep.ErrSessionLost) {
		t.Fatalf("first term: %+v, want ended by ErrSessionLost", st)
	}
	rec.check(t)
	rn.stop(t)
}

// A runner that takes over from one that resigned starts its job at once:
// the settle delay, an hour here, is only for a predecessor whose lease is
// gone. A stopping Run leaves its lease to expire after its resign; a
// revoke there could beat the successor's check (it did, 3 runs of 3).
func TestTakeoverAfterResignDoesNotSettle(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	rec := newRecorder()
	settle := leaderjob.WithSettle(time.Hour)
	prev := start(t, newRunner(t, cli, prefix, rec.job("r0"), settle))
	rec.next(t, ctx)
	for i := 1; i <= 10; i++ {
		next := start(t, newRunner(t, cli, prefix, rec.job(fmt.Sprintf("r%d", i)), settle))
		waitKeys(t, ctx, cli, prefix, 2)
		prev.stop(t)
		if r := rec.next(t, ctx); r.runner != fmt.Sprintf("r%d", i) {
			t.Fatalf("handover %d: %s started", i, r.runner)
		}
		prev = next
	}
	rec.check(t)
}

// Closing the etcd client under a running job stops the job and makes Run
// return an error at once, not when the session's deadline passes (almost
// a minute here).
func TestRunReturnsWhenClientCloses(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.ClientWith(t, testutil.Server(t).ClientConfig())
	rec := newRecorder()
	rn := start(t, newRunner(t, cli, testutil.Prefix(t), rec.job("a"), leaderjob.WithTTL(60*time.Second)))
	rec.next(t, ctx)
	cli.Close()
	select {
	case err := <-rn.done:
		rn.done <- err
		if err == nil || !strings.Contains(err.Error(), "client closed") {
			t.Fatalf("Run after its client closed: got %v, want an error saying so", err)
		}
	case <-ctx.Done():
		t.Fatal("Run still running 30s after its client was closed")
	}
}

// A runner that settles after taking over from a revoked leader gives the
// term up if it ends meanwhile: it starts no job in it and campaigns again
// with a new session, rather than sleeping out the delay (an hour here).
func TestSettleEndsWithTheTerm(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	rec := newRecorder()
	settle := leaderjob.WithSettle(time.Hour)
	start(t, newRunner(t, cli, prefix, rec.job("a"), settle))
	a := rec.next(t, ctx)
	elected := make(chan *election.Term, 4)
	start(t, newRunner(t, cli, prefix, rec.job("b"), settle,
		leaderjob.WithOnElected(func(t *election.Term) { elected <- t })))
	waitKeys(t, ctx, cli, prefix, 2)

	if _, err := cli.Revoke(ctx, a.lease); err != nil {
		t.Fatal(err)
	}
	var b *election.Term
	select {
	case b = <-elected: // b leads and settles: a's lease is gone
	case <-ctx.Done():
		t.Fatal("b was not elected")
	}
	if _, err := cli.Revoke(ctx, b.Session().Lease()); err != nil {
		t.Fatal(err)
	}
	// b's key is back, with a new session, only once its settle gave up
	// the ended term; a's (a new session too) was there already.
	waitKeys(t, ctx, cli, prefix, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.runs {
		if r.token == b.Token() {
			t.Fatalf("%s ran a job in the term that ended while it settled", r.runner)
		}
	}
}
