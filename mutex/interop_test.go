package mutex_test

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// etcdctlLock runs "etcdctl lock prefix" against the shared server. It
// holds the lock from when it prints the key until it is signalled.
type etcdctlLock struct {
	cmd   *exec.Cmd
	lines chan string // stdout, closed when it ends
}

func startEtcdctlLock(t *testing.T, prefix string) *etcdctlLock {
	t.Helper()
	bin := testutil.Etcdctl(t)
	cmd := exec.Command(bin, "--endpoints", strings.Join(testutil.Server(t).Endpoints(), ","), "lock", prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcdctl: %v", err)
	}
	e := &etcdctlLock{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		defer close(e.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range e.lines {
		}
		cmd.Wait()
	})
	return e
}

// key waits until etcdctl holds the lock and returns the key it printed.
func (e *etcdctlLock) key(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case line, ok := <-e.lines:
		if !ok {
			t.Fatal("etcdctl lock ended without printing its key")
		}
		return line
	case <-ctx.Done():
		t.Fatalf("etcdctl lock did not acquire: %v", ctx.Err())
		return ""
	}
}

// unlock signals etcdctl, which unlocks and exits.
func (e *etcdctlLock) unlock(t *testing.T) {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range e.lines {
	}
	if err := e.cmd.Wait(); err != nil {
		t.Fatalf("etcdctl lock: %v", err)
	}
}

func TestInteropEtcdctl(t *testing.T) {
	testutil.Etcdctl(t)
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	// A prefix with a trailing slash names keys under "prefix//", as it
	// does for etcd: both sides must agree on that too.
	for _, slash := range []string{"", "/"} {
		t.Run("prefix"+slash, func(t *testing.T) {
			t.Run("etcdctl holds, we wait", func(t *testing.T) {
				prefix := testutil.Prefix(t) + slash
				e := startEtcdctlLock(t, prefix)
				key := e.key(t, ctx)
				m := newMutex(t, testutil.Session(t, cli), prefix)
				if _, err := m.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
					t.Fatalf("TryLock while etcdctl holds: got %v, want ErrLocked", err)
				}
				if h, err := m.Holder(ctx); err != nil || h.Key != key {
					t.Fatalf("Holder: got (%+v, %v), want key %s", h, err, key)
				}
				stillLocked(t, ctx, m)
				w := lockAsync(ctx, m)
				waitQueue(t, ctx, cli, prefix, 2)
				e.unlock(t)
				r := await(t, ctx, w)
				if r.err != nil {
					t.Fatalf("Lock after etcdctl unlocked: %v", r.err)
				}
				r.l.Unlock(ctx)
			})

			t.Run("we hold, etcdctl waits", func(t *testing.T) {
				prefix := testutil.Prefix(t) + slash
				l := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
				e := startEtcdctlLock(t, prefix)
				waitQueue(t, ctx, cli, prefix, 2)
				select {
				case line := <-e.lines:
					t.Fatalf("etcdctl acquired while we hold the lock: %q", line)
				default:
				}
				if h, err := newMutex(t, testutil.Session(t, cli), prefix).Holder(ctx); err != nil || h.Key != l.Key() {
					t.Fatalf("Holder while etcdctl waits: got (%+v, %v), want key %s", h, err, l.Key())
				}
				if err := l.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				key := e.key(t, ctx)
				if got := queue(t, ctx, cli, prefix); len(got) != 1 || got[0] != key {
					t.Fatalf("keys while etcdctl holds: got %v, want [%s]", got, key)
				}
				e.unlock(t)
			})
		})
	}
}

func TestInteropConcurrencyMutex(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	// A prefix with a trailing slash names keys under "prefix//", as it
	// does for etcd: both sides must agree on that too.
	for _, slash := range []string{"", "/"} {
		t.Run("prefix"+slash, func(t *testing.T) {
			etcdSession := func(t *testing.T) *concurrency.Session {
				s, err := concurrency.NewSession(cli)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}

			t.Run("theirs holds, ours waits", func(t *testing.T) {
				prefix := testutil.Prefix(t) + slash
				theirs := concurrency.NewMutex(etcdSession(t), prefix)
				if err := theirs.Lock(ctx); err != nil {
					t.Fatal(err)
				}
				m := newMutex(t, testutil.Session(t, cli), prefix)
				if _, err := m.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
					t.Fatalf("TryLock: got %v, want ErrLocked", err)
				}
				stillLocked(t, ctx, m)
				w := lockAsync(ctx, m)
				waitQueue(t, ctx, cli, prefix, 2)
				if err := theirs.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				r := await(t, ctx, w)
				if r.err != nil {
					t.Fatal(r.err)
				}
				if theirRev := theirs.Header().Revision; r.l.Token() <= theirRev {
					t.Fatalf("our token %d is not after their key's revision %d", r.l.Token(), theirRev)
				}
				r.l.Unlock(ctx)
			})

			t.Run("ours holds, theirs waits", func(t *testing.T) {
				prefix := testutil.Prefix(t) + slash
				l := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
				theirs := concurrency.NewMutex(etcdSession(t), prefix)
				if err := theirs.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
					t.Fatalf("their TryLock: got %v, want concurrency.ErrLocked", err)
				}
				short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				err := theirs.Lock(short)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("their Lock while we hold: got %v, want DeadlineExceeded", err)
				}
				locked := make(chan error, 1)
				go func() { locked <- theirs.Lock(ctx) }()
				waitQueue(t, ctx, cli, prefix, 2)
				select {
				case err := <-locked:
					t.Fatalf("their Lock returned %v while we hold", err)
				default:
				}
				if err := l.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-locked:
					if err != nil {
						t.Fatal(err)
					}
				case <-ctx.Done():
					t.Fatal("their Lock did not return after our Unlock")
				}
				if err := theirs.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("mixed queue is served in order", func(t *testing.T) {
				prefix := testutil.Prefix(t) + slash
				first := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
				var (
					theirs   = concurrency.NewMutex(etcdSession(t), prefix)
					theirsCh = make(chan error, 1)
				)
				go func() { theirsCh <- theirs.Lock(ctx) }()
				waitQueue(t, ctx, cli, prefix, 2)
				w := lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
				waitQueue(t, ctx, cli, prefix, 3)

				first.Unlock(ctx)
				select {
				case err := <-theirsCh:
					if err != nil {
						t.Fatal(err)
					}
				case r := <-w:
					t.Fatalf("ours (queued third) acquired before theirs (queued second): %v", r.err)
				case <-ctx.Done():
					t.Fatal("theirs did not acquire")
				}
				select {
				case r := <-w:
					t.Fatalf("ours acquired while theirs holds: %v", r.err)
				default:
				}
				theirs.Unlock(ctx)
				r := await(t, ctx, w)
				if r.err != nil {
					t.Fatal(r.err)
				}
				r.l.Unlock(ctx)
			})
		})
	}
}
