package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The config commands against the built binary: put with and without a
// compare-and-swap, get, history and rollback.
func TestConfigPutGetHistoryRollback(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	prefix := testutil.Prefix(t) + "/"
	key := prefix + "app.json"

	r := invoke(t, ctx, "config", "put", key, `{"n": 1}`)
	r.wantCode(t, exitOK)
	first := strings.TrimSpace(r.stdout)
	if _, err := strconv.ParseInt(first, 10, 64); err != nil {
		t.Fatalf("put printed %q, want a revision", r.stdout)
	}
	r = invoke(t, ctx, "config", "get", "--revision", key)
	r.wantCode(t, exitOK)
	if got, want := r.stdout, first+` {"n": 1}`+"\n"; got != want {
		t.Fatalf("get --revision: %q, want %q", got, want)
	}
	invoke(t, ctx, "config", "put", "--if-revision", first, key, `{"n": 2}`).wantCode(t, exitOK)
	r = invoke(t, ctx, "config", "put", "--if-revision", first, key, `{"n": 3}`)
	r.wantCode(t, exitBusy)
	if !strings.Contains(r.stderr, "written since") {
		t.Fatalf("a conflicting put's message: %q", r.stderr)
	}
	invoke(t, ctx, "config", "put", prefix+"extra", "x").wantCode(t, exitOK)
	r = invoke(t, ctx, "config", "get", "--prefix", prefix)
	r.wantCode(t, exitOK)
	if got, want := r.stdout, "app.json={\"n\": 2}\nextra=x\n"; got != want {
		t.Fatalf("get --prefix: %q, want %q", got, want)
	}
	invoke(t, ctx, "config", "get", prefix+"missing").wantCode(t, exitError)

	r = invoke(t, ctx, "config", "history", "-n", "2", prefix)
	r.wantCode(t, exitOK)
	if !strings.HasPrefix(r.stdout, "--- revision ") || strings.Count(r.stdout, "--- revision") != 2 {
		t.Fatalf("history -n 2:\n%s", r.stdout)
	}
	r = invoke(t, ctx, "config", "rollback", prefix, first)
	r.wantCode(t, exitOK)
	r = invoke(t, ctx, "config", "get", "--prefix", prefix)
	if got, want := r.stdout, "app.json={\"n\": 1}\n"; got != want {
		t.Fatalf("get --prefix after rollback to %s: %q, want %q", first, got, want)
	}
	invoke(t, ctx, "config", "rollback", prefix, "x").wantCode(t, exitUsage)
	invoke(t, ctx, "config", "put", key).wantCode(t, exitUsage)
}

// config watch prints the current version and each accepted one; with
// --validate, a version the command fails on is rejected and not printed.
func TestConfigWatchValidate(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	prefix := testutil.Prefix(t) + "/"
	key := prefix + "workers"
	invoke(t, ctx, "config", "put", key, "2").wantCode(t, exitOK)
	// The validator accepts a positive number.
	w := start(t, "config", "watch", prefix, "--doc", key, "--validate", "--",
		"sh", "-c", `read n; [ "$n" -gt 0 ]`)
	w.waitOut(ctx, "\n2\n")
	bad := strings.TrimSpace(invoke(t, ctx, "config", "put", key, "0").stdout)
	w.waitErr(ctx, "rejected revision "+bad)
	invoke(t, ctx, "config", "put", key, "5").wantCode(t, exitOK)
	w.waitOut(ctx, "\n5\n")
	if strings.Contains(w.stdout.String(), "\n0\n") {
		t.Fatalf("a rejected version was printed:\n%s", w.stdout)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(ctx); code != exitOK {
		t.Fatalf("watch after SIGTERM: exit %d\n%s", code, w.stderr)
	}
}
