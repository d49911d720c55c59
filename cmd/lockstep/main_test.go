package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The tests run the built binaries as a user would: as processes, against
// the shared etcd, looking at exit codes, output and etcd's keys.

func TestMain(m *testing.M) { testutil.Main(m, removeBuilt) }

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// built returns the path of a binary of the module: "lockstep", or an
// example's name. Everything is built once per test binary, with the race
// detector when the tests run with it.
func built(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "lockstep-cli-test-"); buildErr != nil {
			return
		}
		args := []string{"build", "-o", buildDir + string(filepath.Separator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/lockstep-go/lockstep/cmd/lockstep", "github.com/lockstep-go/lockstep/examples/...")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = errors.New("go " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

func removeBuilt() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// output collects a process's stdout or stderr and wakes whoever waits for
// a string in it.
type output struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.changed)
	o.changed = make(chan struct{})
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor waits until the output contains s.
func (o *output) waitFor(ctx context.Context, s string) error { return o.waitCount(ctx, s, 1) }

// waitCount waits until the output contains s n times.
func (o *output) waitCount(ctx context.Context, s string, n int) error {
	for {
		o.mu.Lock()
		found, changed := strings.Count(o.b.String(), s) >= n, o.changed
		o.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// proc is a running lockstep (or other) process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *output
	stderr *output
	done   chan struct{}
	err    error
}

// env is the environment of every process a test starts: it finds the
// shared etcd through LOCKSTEP_ENDPOINTS, as a user's shell would.
func env(t *testing.T) []string {
	return append(os.Environ(), envEndpoints+"="+strings.Join(testutil.Server(t).Endpoints(), ","))
}

// start starts lockstep with args.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCmd(t, built(t, "lockstep"), args, env(t), nil)
}

// startCmd starts any program. It is stopped, if it still runs, when the
// test ends: SIGTERM, then SIGKILL.
func startCmd(t *testing.T, path string, args, env []string, stdin []byte) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(path, args...), stdout: newOutput(), stderr: newOutput(), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if stdin != nil {
		p.cmd.Stdin = bytes.NewReader(stdin)
	}
	// A grandchild that outlives its parent must not hold Wait up.
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(ctx context.Context) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.t.Fatalf("%v did not exit\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, p.stdout, p.stderr)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		p.t.Fatalf("%v: %v", p.cmd.Args, p.err)
		return -1
	}
}

// waitOut waits until the process's stdout contains s.
func (p *proc) waitOut(ctx context.Context, s string) {
	p.t.Helper()
	if err := p.stdout.waitFor(ctx, s); err != nil {
		p.t.Fatalf("%v: %q never appeared on stdout\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, s, p.stdout, p.stderr)
	}
}

// waitErr waits until the process's stderr contains s.
func (p *proc) waitErr(ctx context.Context, s string) {
	p.t.Helper()
	if err := p.stderr.waitFor(ctx, s); err != nil {
		p.t.Fatalf("%v: %q never appeared on stderr\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, s, p.stdout, p.stderr)
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// result is a finished process.
type result struct {
	code           int
	stdout, stderr string
}

// invoke runs lockstep with args to completion.
func invoke(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	p := start(t, args...)
	code := p.wait(ctx)
	return result{code, p.stdout.String(), p.stderr.String()}
}

// wantCode fails the test if r did not exit with want.
func (r result) wantCode(t *testing.T, want int, args ...string) {
	t.Helper()
	if r.code != want {
		t.Fatalf("lockstep %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
}

// keys returns the keys under prefix+"/", oldest first.
func keys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

// waitKeys waits until n keys exist under prefix+"/": that many holders or
// waiters are in line.
func waitKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == int64(n) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d keys under %s/: %v (last count %v)", n, prefix, ctx.Err(), resp)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// leaseOf returns the lease of the oldest key under prefix+"/".
func leaseOf(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) (string, clientv3.LeaseID) {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("no key under %s/", prefix)
	}
	return string(resp.Kvs[0].Key), clientv3.LeaseID(resp.Kvs[0].Lease)
}

// script is a shell command that prints ready, then loops until a signal;
// on SIGTERM it prints term and exits with 0.
const script = `trap 'echo term; exit 0' TERM; echo ready; while :; do sleep 0.05; done`
