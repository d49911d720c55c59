package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestLockGivesCommandTheLock(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	r := invoke(t, ctx, "lock", name, "--", "sh", "-c",
		`echo "$LOCKSTEP_KEY $LOCKSTEP_TOKEN $ETCD_LOCK_KEY $ETCD_LOCK_REV $LOCKSTEP_NAME $LOCKSTEP_LEASE $LOCKSTEP_ENDPOINTS"`)
	r.wantCode(t, exitOK)
	f := strings.Fields(r.stdout)
	if len(f) != 7 {
		t.Fatalf("CMD's variables: got %q, want 7 fields", r.stdout)
	}
	key, token, etcdKey, etcdRev, gotName, lease, eps := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	if !strings.HasPrefix(key, name+"/") || key != name+"/"+lease {
		t.Errorf("LOCKSTEP_KEY %q, want %s/<LOCKSTEP_LEASE %s>", key, name, lease)
	}
	if n, err := strconv.ParseInt(token, 10, 64); err != nil || n <= 0 {
		t.Errorf("LOCKSTEP_TOKEN %q, want a positive revision", token)
	}
	if etcdKey != key || etcdRev != token || gotName != name {
		t.Errorf("ETCD_LOCK_KEY %q, ETCD_LOCK_REV %q, LOCKSTEP_NAME %q; want %q, %q, %q", etcdKey, etcdRev, gotName, key, token, name)
	}
	if want := strings.Join(testutil.Server(t).Endpoints(), ","); eps != want {
		t.Errorf("LOCKSTEP_ENDPOINTS %q, want %q", eps, want)
	}
	if ks := keys(t, ctx, cli, name); len(ks) != 0 {
		t.Errorf("keys left after CMD exited: %q", ks)
	}
}

func TestLockExitCodes(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	notExec := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cmd  []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"CMD's code", []string{"sh", "-c", "exit 3"}, 3},
		{"CMD killed by a signal", []string{"sh", "-c", "kill -KILL $$"}, 128 + int(syscall.SIGKILL)},
		{"CMD not found", []string{"/nonexistent/cmd"}, exitNoCmd},
		{"CMD not executable", []string{notExec}, exitNoRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := testutil.Prefix(t)
			args := append([]string{"lock", name, "--"}, tt.cmd...)
			invoke(t, ctx, args...).wantCode(t, tt.want, args...)
			if ks := keys(t, ctx, cli, name); len(ks) != 0 {
				t.Errorf("keys left: %q", ks)
			}
		})
	}
}

// While lockstep holds a lock, lockstep lock --try fails with the busy code
// and a real etcdctl lock waits until our holder exits, in both directions.
func TestLockExcludesTryAndEtcdctl(t *testing.T) {
	etcdctl := testutil.Etcdctl(t)
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	eps := "--endpoints=" + strings.Join(testutil.Server(t).Endpoints(), ",")

	t.Run("lockstep holds", func(t *testing.T) {
		name := testutil.Prefix(t)
		holder := start(t, "lock", name, "--", "sh", "-c", "echo held; exec sleep 600")
		holder.waitOut(ctx, "held")

		try := invoke(t, ctx, "lock", "--try", name, "--", "echo", "never")
		try.wantCode(t, exitBusy)
		if strings.Contains(try.stdout, "never") || !strings.Contains(try.stderr, "busy") {
			t.Errorf("--try on a held lock: stdout %q, stderr %q", try.stdout, try.stderr)
		}

		waiter := startCmd(t, etcdctl, []string{eps, "lock", name, "echo", "etcdctl-got-it"}, os.Environ(), nil)
		waitKeys(t, ctx, cli, name, 2) // etcdctl is in line behind us
		if waiter.exited() || waiter.stdout.String() != "" {
			t.Fatalf("etcdctl lock did not wait: stdout %q, stderr %q", waiter.stdout, waiter.stderr)
		}
		holder.signal(syscall.SIGTERM)
		if code := holder.wait(ctx); code != 128+int(syscall.SIGTERM) {
			t.Errorf("holder: exit code %d, want %d (CMD killed by the forwarded SIGTERM)", code, 128+int(syscall.SIGTERM))
		}
		if code := waiter.wait(ctx); code != 0 || !strings.Contains(waiter.stdout.String(), "etcdctl-got-it") {
			t.Errorf("etcdctl lock after our holder exited: exit code %d, stdout %q, stderr %q", code, waiter.stdout, waiter.stderr)
		}
	})

	t.Run("etcdctl holds", func(t *testing.T) {
		name := testutil.Prefix(t)
		holder := startCmd(t, etcdctl, []string{eps, "lock", name}, os.Environ(), nil)
		holder.waitOut(ctx, name+"/")

		invoke(t, ctx, "lock", "--try", name, "--", "true").wantCode(t, exitBusy)
		invoke(t, ctx, "lock", "--timeout", "100ms", name, "--", "true").wantCode(t, exitBusy)

		waiter := start(t, "lock", name, "--", "echo", "lockstep-got-it")
		waitKeys(t, ctx, cli, name, 2)
		if waiter.exited() {
			t.Fatalf("lockstep lock did not wait: stdout %q, stderr %q", waiter.stdout, waiter.stderr)
		}
		holder.signal(syscall.SIGTERM) // etcdctl unlocks on SIGTERM
		holder.wait(ctx)
		if code := waiter.wait(ctx); code != 0 || !strings.Contains(waiter.stdout.String(), "lockstep-got-it") {
			t.Errorf("lockstep lock after etcdctl exited: exit code %d, stdout %q, stderr %q", code, waiter.stdout, waiter.stderr)
		}
	})
}

// SIGTERM and SIGINT to lockstep reach CMD; lockstep exits with CMD's code
// and releases the lock.
func TestLockForwardsSignals(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	tests := []struct {
		sig     syscall.Signal
		want    int
		wantOut string
	}{
		{syscall.SIGTERM, 7, "got-TERM"},
		{syscall.SIGINT, 8, "got-INT"},
	}
	for _, tt := range tests {
		t.Run(tt.sig.String(), func(t *testing.T) {
			name := testutil.Prefix(t)
			p := start(t, "lock", name, "--", "sh", "-c",
				`trap 'echo got-TERM; exit 7' TERM; trap 'echo got-INT; exit 8' INT; echo ready; while :; do sleep 0.05; done`)
			p.waitOut(ctx, "ready")
			p.signal(tt.sig)
			if code := p.wait(ctx); code != tt.want {
				t.Fatalf("exit code %d, want %d (CMD's)\nstdout:\n%s\nstderr:\n%s", code, tt.want, p.stdout, p.stderr)
			}
			if !strings.Contains(p.stdout.String(), tt.wantOut) {
				t.Errorf("CMD's output %q lacks %q", p.stdout, tt.wantOut)
			}
			if ks := keys(t, ctx, cli, name); len(ks) != 0 {
				t.Errorf("keys left: %q", ks)
			}
		})
	}
}

// A lock lost while CMD runs: CMD gets SIGTERM (then SIGKILL if it ignores
// it) and lockstep exits with the lost code.
func TestLockLost(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	revoke := func(t *testing.T, name string) {
		_, lease := leaseOf(t, ctx, cli, name)
		if _, err := cli.Revoke(ctx, lease); err != nil {
			t.Fatal(err)
		}
	}
	del := func(t *testing.T, name string) {
		key, _ := leaseOf(t, ctx, cli, name)
		if _, err := cli.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		lose    func(t *testing.T, name string)
		cmd     string
		wantOut string // CMD's output after the loss
		wantErr string // lockstep's report
	}{
		{"lease revoked", revoke, script, "term", "CMD exit code 0"},
		{"key deleted", del, script, "term", "CMD exit code 0"},
		{"CMD ignores SIGTERM", del, `trap '' TERM; echo ready; while :; do sleep 0.05; done`, "", "CMD exit code 137"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := testutil.Prefix(t)
			p := start(t, "lock", "--grace", "100ms", name, "--", "sh", "-c", tt.cmd)
			p.waitOut(ctx, "ready")
			tt.lose(t, name)
			if code := p.wait(ctx); code != exitLost {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitLost, p.stdout, p.stderr)
			}
			if !strings.Contains(p.stdout.String(), tt.wantOut) || !strings.Contains(p.stderr.String(), "lost") || !strings.Contains(p.stderr.String(), tt.wantErr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", p.stdout, tt.wantOut, p.stderr, tt.wantErr)
			}
		})
	}
}

// Without CMD, lock prints its variables and holds until a signal.
func TestLockWithoutCommand(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)

	t.Run("signal releases", func(t *testing.T) {
		name := testutil.Prefix(t)
		p := start(t, "lock", name)
		p.waitOut(ctx, "LOCKSTEP_ENDPOINTS=")
		key, _ := leaseOf(t, ctx, cli, name)
		if !strings.Contains(p.stdout.String(), "LOCKSTEP_KEY="+key+"\n") {
			t.Fatalf("stdout %q lacks LOCKSTEP_KEY=%s", p.stdout, key)
		}
		p.signal(syscall.SIGINT)
		if code := p.wait(ctx); code != exitOK {
			t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, p.stderr)
		}
		if ks := keys(t, ctx, cli, name); len(ks) != 0 {
			t.Errorf("keys left: %q", ks)
		}
	})

	t.Run("loss", func(t *testing.T) {
		name := testutil.Prefix(t)
		p := start(t, "lock", name)
		p.waitOut(ctx, "LOCKSTEP_ENDPOINTS=")
		key, _ := leaseOf(t, ctx, cli, name)
		if _, err := cli.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(ctx); code != exitLost {
			t.Fatalf("exit code %d, want %d\nstderr:\n%s", code, exitLost, p.stderr)
		}
	})
}

// A signal while waiting for the lock: exit 128+N, and our place in line
// is gone.
func TestLockInterruptedWhileWaiting(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	holder := start(t, "lock", name, "--", "sh", "-c", script)
	holder.waitOut(ctx, "ready")
	waiter := start(t, "lock", name, "--", "echo", "never")
	waitKeys(t, ctx, cli, name, 2)
	waiter.signal(syscall.SIGTERM)
	if code := waiter.wait(ctx); code != 128+int(syscall.SIGTERM) || strings.Contains(waiter.stdout.String(), "never") {
		t.Fatalf("exit code %d, stdout %q; want %d and no CMD", code, waiter.stdout, 128+int(syscall.SIGTERM))
	}
	waitKeys(t, ctx, cli, name, 1)
	holder.signal(syscall.SIGTERM)
	if code := holder.wait(ctx); code != 0 {
		t.Fatalf("holder: exit code %d, want 0 (its CMD exits 0 on SIGTERM)", code)
	}
}
