package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// leaderScript prints who leads with which token, then runs until a signal.
const leaderScript = `echo "leader $LOCKSTEP_ID $LOCKSTEP_TOKEN"; exec sleep 600`

// elect runs CMD only while leader: a second candidate waits, takes over
// when the first goes, and after losing its term campaigns again and runs
// CMD anew.
func TestElectRunsCommandOnlyWhileLeader(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)

	a := start(t, "elect", name, "--id", "node-a", "--ttl", "2s", "--", "sh", "-c", leaderScript)
	a.waitOut(ctx, "leader node-a ")
	b := start(t, "elect", name, "--id", "node-b", "--ttl", "2s", "--", "sh", "-c", leaderScript)
	waitKeys(t, ctx, cli, name, 2)
	b.waitErr(ctx, `led by "node-a"`)
	if strings.Contains(b.stdout.String(), "leader") {
		t.Fatalf("node-b ran CMD while node-a leads: %q", b.stdout)
	}

	a.signal(syscall.SIGTERM)
	if code := a.wait(ctx); code != 128+int(syscall.SIGTERM) {
		t.Errorf("node-a: exit code %d, want %d (its CMD's, killed by the forwarded SIGTERM)", code, 128+int(syscall.SIGTERM))
	}
	b.waitOut(ctx, "leader node-b ")

	// node-b's term ends under it: CMD is stopped, node-b campaigns again
	// with a new session and, alone, leads again.
	_, lease := leaseOf(t, ctx, cli, name)
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	b.waitErr(ctx, "CMD stopped (exit code 143)") // SIGTERM
	if err := b.stdout.waitCount(ctx, "leader node-b", 2); err != nil {
		t.Fatalf("node-b did not run CMD again: stdout %q, stderr %q", b.stdout, b.stderr)
	}
	var tokens []int64
	for _, f := range strings.Fields(strings.ReplaceAll(b.stdout.String(), "leader node-b", "")) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, n)
	}
	if len(tokens) != 2 || tokens[0] >= tokens[1] {
		t.Errorf("node-b's tokens %v: want two, increasing", tokens)
	}
	b.signal(syscall.SIGINT)
	if code := b.wait(ctx); code != 128+int(syscall.SIGINT) {
		t.Errorf("node-b: exit code %d, want %d", code, 128+int(syscall.SIGINT))
	}
	waitKeys(t, ctx, cli, name, 0)
}

func TestElectPolicies(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)

	t.Run("stop-when-done: CMD's success ends it", func(t *testing.T) {
		name := testutil.Prefix(t)
		invoke(t, ctx, "elect", name, "--", "sh", "-c", "exit 0").wantCode(t, exitOK)
		waitKeys(t, ctx, cli, name, 0)
	})
	t.Run("a CMD that cannot start ends it", func(t *testing.T) {
		invoke(t, ctx, "elect", testutil.Prefix(t), "--", "/nonexistent/cmd").wantCode(t, exitNoCmd)
	})
	t.Run("run-again restarts CMD in the same term", func(t *testing.T) {
		name := testutil.Prefix(t)
		p := start(t, "elect", name, "--policy", "run-again", "--", "sh", "-c", `echo "run $LOCKSTEP_TOKEN"`)
		if err := p.stdout.waitCount(ctx, "run ", 3); err != nil {
			t.Fatalf("CMD did not run 3 times: stdout %q, stderr %q", p.stdout, p.stderr)
		}
		lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
		if lines[0] != lines[1] || lines[1] != lines[2] {
			t.Errorf("runs under different terms: %q", lines)
		}
		p.signal(syscall.SIGTERM)
		p.wait(ctx)
	})
	// A failing CMD is not retried in silence: lockstep says what it does
	// next, and when.
	for _, tt := range []struct{ policy, want string }{
		{"stop-when-done", "lockstep elect: CMD exited with 3; resigned, campaigning again in "},
		{"recampaign", "lockstep elect: CMD exited with 3; resigned, campaigning again in "},
		{"run-again", "lockstep elect: CMD exited with 3; still leader, running it again in "},
	} {
		t.Run(tt.policy+" says how it backs off", func(t *testing.T) {
			p := start(t, "elect", testutil.Prefix(t), "--policy", tt.policy, "--", "sh", "-c", "exit 3")
			if err := p.stderr.waitCount(ctx, tt.want, 2); err != nil {
				t.Fatalf("stderr %q lacks %q twice", p.stderr, tt.want)
			}
			p.signal(syscall.SIGTERM)
			p.wait(ctx)
		})
	}
}

// Without CMD, elect prints its variables when elected and leads until a
// signal, which resigns: exit 0.
func TestElectWithoutCommand(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	p := start(t, "elect", name, "--id", "solo")
	p.waitOut(ctx, "LOCKSTEP_ENDPOINTS=")
	if !strings.Contains(p.stdout.String(), "LOCKSTEP_ID=solo") {
		t.Errorf("stdout %q lacks LOCKSTEP_ID=solo", p.stdout)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(ctx); code != exitOK {
		t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, p.stderr)
	}
	waitKeys(t, ctx, cli, name, 0)
}
