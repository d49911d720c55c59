package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// sem runs at most --limit commands at once; --try fails with the busy
// code when all permits are taken, a waiter runs when one is given back,
// and a different limit on the same name is an error.
func TestSemBoundsConcurrentCommands(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	holder := func() *proc {
		p := start(t, "sem", name, "--limit", "2", "--", "sh", "-c", `echo "permit of $LOCKSTEP_LIMIT, token $LOCKSTEP_TOKEN"; `+script)
		p.waitOut(ctx, "ready")
		return p
	}
	h1, h2 := holder(), holder()
	if !strings.Contains(h1.stdout.String(), "permit of 2") {
		t.Errorf("CMD's output %q lacks LOCKSTEP_LIMIT", h1.stdout)
	}

	invoke(t, ctx, "sem", name, "--limit", "2", "--try", "--", "echo", "never").wantCode(t, exitBusy)
	invoke(t, ctx, "sem", name, "--limit", "2", "--timeout", "100ms", "--", "echo", "never").wantCode(t, exitBusy)
	mismatch := invoke(t, ctx, "sem", name, "--limit", "3", "--", "echo", "never")
	mismatch.wantCode(t, exitError)
	if !strings.Contains(mismatch.stderr, "limit mismatch") {
		t.Errorf("a different limit: stderr %q, want a limit mismatch", mismatch.stderr)
	}

	waiter := start(t, "sem", name, "--limit", "2", "--", "echo", "third")
	waitKeys(t, ctx, cli, name, 3)
	if waiter.exited() {
		t.Fatalf("the third ran while two held: stdout %q", waiter.stdout)
	}
	h1.signal(syscall.SIGTERM)
	if code := h1.wait(ctx); code != 0 {
		t.Errorf("holder: exit code %d, want 0", code)
	}
	if code := waiter.wait(ctx); code != 0 || !strings.Contains(waiter.stdout.String(), "third") {
		t.Errorf("waiter: exit code %d, stdout %q", code, waiter.stdout)
	}
	h2.signal(syscall.SIGTERM)
	h2.wait(ctx)
	waitKeys(t, ctx, cli, name, 0)
}

func TestSemLost(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	p := start(t, "sem", name, "--limit", "1", "--", "sh", "-c", script)
	p.waitOut(ctx, "ready")
	key, _ := leaseOf(t, ctx, cli, name)
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(ctx); code != exitLost || !strings.Contains(p.stdout.String(), "term") {
		t.Fatalf("exit code %d, stdout %q; want %d and CMD stopped by SIGTERM", code, p.stdout, exitLost)
	}
}
