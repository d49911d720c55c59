//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A holder's command never outlives the holder, nor do the processes it
// started: a grandchild that ignores SIGTERM is killed when CMD exits on
// its own, when a second signal kills lockstep, and when the lock is lost.
func TestCommandsGroupDiesWithIt(t *testing.T) {
	cli := testutil.Client(t)
	// grandchild starts a process that ignores SIGTERM and writes its pid
	// to $PIDFILE.
	const grandchild = `(trap '' TERM; exec sleep 300 >/dev/null 2>&1) & echo $! > "$PIDFILE"; `
	const loop = `echo ready; while :; do sleep 0.05; done`
	tests := []struct {
		name   string
		script string
		act    func(ctx context.Context, t *testing.T, p *proc, name string)
		want   int
	}{
		{"CMD exits", grandchild + `echo ready; exit 3`, func(context.Context, *testing.T, *proc, string) {}, 3},
		{"second signal", grandchild + `trap 'echo got-term' TERM; ` + loop, func(ctx context.Context, t *testing.T, p *proc, _ string) {
			// CMD outlives the first signal (--grace is an hour), so
			// only the second one ends this.
			p.signal(syscall.SIGTERM)
			p.waitOut(ctx, "got-term")
			p.signal(syscall.SIGTERM)
		}, 128 + int(syscall.SIGTERM)},
		{"lock lost", grandchild + `trap 'exit 0' TERM; ` + loop, func(ctx context.Context, t *testing.T, _ *proc, name string) {
			key, _ := leaseOf(t, ctx, cli, name)
			if _, err := cli.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}, exitLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testutil.Context(t, time.Minute)
			name := testutil.Prefix(t)
			pidFile := filepath.Join(t.TempDir(), "pid")
			p := startCmd(t, built(t, "lockstep"), []string{"lock", "--grace", "1h", name, "--", "sh", "-c", tt.script},
				append(env(t), "PIDFILE="+pidFile), nil)
			p.waitOut(ctx, "ready")
			pid := readPid(t, pidFile)
			tt.act(ctx, t, p, name)
			if code := p.wait(ctx); code != tt.want {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, p.stdout, p.stderr)
			}
			awaitDead(t, ctx, pid)
		})
	}
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// awaitDead waits until pid is gone or a zombie (its new parent may not
// reap it), and fails the test if it still runs when ctx ends. The kill
// was sent before lockstep exited; the kernel finishes it shortly after.
func awaitDead(t *testing.T, ctx context.Context, pid int) {
	t.Helper()
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// The state follows the command name in parentheses.
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return
		}
		select {
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("CMD's child %d outlived lockstep", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
