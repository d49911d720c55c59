package leaderjob_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// run is one execution of a job: who ran it, under which term, and when
// it started and saw its ctx end.
type run struct {
	runner string
	token  int64
	lease  clientv3.LeaseID
	term   *election.Term
	start  time.Time
	end    time.Time // zero while the job runs
}

// recorder records the runs of the jobs it makes.
type recorder struct {
	mu      sync.Mutex
	runs    []*run
	started chan *run
}

func newRecorder() *recorder { return &recorder{started: make(chan *run, 1000)} }

// job returns a job for runner name that records its run and works until
// its ctx ends.
func (rec *recorder) job(name string) leaderjob.Job {
	return func(ctx context.Context, t *election.Term) error {
		r := &run{runner: name, token: t.Token(), lease: t.Session().Lease(), term: t, start: time.Now()}
		rec.mu.Lock()
		rec.runs = append(rec.runs, r)
		rec.mu.Unlock()
		rec.started <- r
		<-ctx.Done()
		rec.mu.Lock()
		r.end = time.Now()
		rec.mu.Unlock()
		return ctx.Err()
	}
}

// next waits for the next job to start.
func (rec *recorder) next(t *testing.T, ctx context.Context) *run {
	t.Helper()
	select {
	case r := <-rec.started:
		return r
	case <-ctx.Done():
		t.Fatal("no job started")
		return nil
	}
}

// ended returns when r's job saw its ctx end.
func (rec *recorder) ended(t *testing.T, ctx context.Context, r *run) time.Time {
	t.Helper()
	for {
		rec.mu.Lock()
		end := r.end
		rec.mu.Unlock()
		if !end.IsZero() {
			return end
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job of %s (token %d) still running", r.runner, r.token)
		case <-time.After(time.Millisecond):
		}
	}
}

// check asserts that no two jobs ran with a live ctx at the same instant
// and that every term's token is above the previous one.
func (rec *recorder) check(t *testing.T) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	runs := slices.Clone(rec.runs)
	slices.SortFunc(runs, func(a, b *run) int { return a.start.Compare(b.start) })
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		if prev.end.IsZero() || !prev.end.Before(cur.start) {
			t.Errorf("overlap: %s (token %d) ran until %v, %s (token %d) started %v before that",
				prev.runner, prev.token, prev.end.Format(time.StampMicro), cur.runner, cur.token, prev.end.Sub(cur.start))
		}
		if cur.token <= prev.token {
			t.Errorf("token of %s %d not above %s's %d", cur.runner, cur.token, prev.runner, prev.token)
		}
	}
}

// running is a Runner whose Run runs in a goroutine.
type running struct {
	r      *leaderjob.Runner
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, r *leaderjob.Runner) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(ctx) }()
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

func newRunner(t *testing.T, cli *clientv3.Client, prefix string, job leaderjob.Job, opts ...leaderjob.Option) *leaderjob.Runner {
	t.Helper()
	r, err := leaderjob.New(cli, prefix, job, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// stop cancels Run and returns what it returned. It may be called again.
func (rn *running) stop(t *testing.T) error {
	t.Helper()
	rn.cancel()
	return rn.wait(t)
}

// wait returns what Run returned.
func (rn *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rn.done:
		rn.done <- err // for the next caller
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// waitKeys waits until the election has n candidate keys.
func waitKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == int64(n) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d candidates: %v", n, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
