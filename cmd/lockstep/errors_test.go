package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// An endpoint that refuses connections fails at once, saying so, rather
// than after --dial-timeout with "context deadline exceeded". The dial
// timeout is longer than the test's own bound: only the fast path passes.
func TestConnectionRefusedFailsFast(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	for _, eps := range []string{refused, refused + "," + refused} {
		p := startCmd(t, built(t, "lockstep"), []string{"lock", "--endpoints", eps, "--dial-timeout", "1h", "/x", "--", "true"}, os.Environ(), nil)
		code := p.wait(ctx)
		if code != exitError || !strings.Contains(p.stderr.String(), "connection refused") ||
			!strings.HasPrefix(p.stderr.String(), "lockstep lock: cannot reach etcd: ") {
			t.Errorf("--endpoints %s: exit code %d, stderr %q; want %d and the refusal", eps, code, p.stderr, exitError)
		}
	}
}

// Waiting mends a timeout, not a refusal or a name that does not resolve.
func TestIsFinal(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("ep: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{fmt.Errorf("ep: %w", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}), true},
		{&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, false},
		{fmt.Errorf("ep: %w", context.DeadlineExceeded), false},
		{errNotDialed, false},
	} {
		if got := isFinal(tt.err); got != tt.want {
			t.Errorf("isFinal(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// Every message carries one prefix, the command's; flag errors name the
// command; a negative duration is refused before anything is sent.
func TestErrorText(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		// Refused before connecting: that endpoint would time out.
		{[]string{"lock", "--endpoints", "http://10.255.255.1:2379", "--ttl", "1s", "/x", "--", "true"}, exitUsage, "lockstep lock: --ttl 1s: invalid session ttl"},
		{[]string{"elect", "/", "--", "true"}, exitUsage, "lockstep elect: invalid prefix"},
		// Refused before connecting: that endpoint would time out.
		{[]string{"lock", "--endpoints", "http://10.255.255.1:2379", "/", "--", "true"}, exitUsage, "lockstep lock: invalid prefix"},
		{[]string{"queue", "push", "--endpoints", "http://10.255.255.1:2379", "", "v"}, exitUsage, "lockstep queue push: invalid prefix"},
		{[]string{"lock", "--bogus", "/x"}, exitUsage, "lockstep lock: flag provided but not defined: -bogus"},
		{[]string{"barrier", "wait", "--bogus", "/x"}, exitUsage, "lockstep barrier wait: flag provided but not defined: -bogus"},
		{[]string{"lock", "--endpoints", "http://127.0.0.1:1", "--timeout", "-1s", "/x", "--", "true"}, exitUsage, "lockstep lock: --timeout -1s: must not be negative"},
		{[]string{"lock", "--endpoints", "http://127.0.0.1:1", "--ttl", "-5s", "/x", "--", "true"}, exitUsage, "lockstep lock: --ttl -5s: must not be negative"},
		{[]string{"sem", "--endpoints", "http://127.0.0.1:1", "--grace", "-1s", "--limit", "2", "/x", "--", "true"}, exitUsage, "lockstep sem: --grace -1s: must not be negative"},
	} {
		r := invoke(t, ctx, tt.args...)
		r.wantCode(t, tt.code, tt.args...)
		first, _, _ := strings.Cut(r.stderr, "\n")
		if !strings.HasPrefix(first, tt.want) || strings.Count(first, "lockstep") != 1 {
			t.Errorf("lockstep %s: stderr %q, want one line starting %q with one prefix", strings.Join(tt.args, " "), r.stderr, tt.want)
		}
	}
}

// A signal is named as a shell user names it.
func TestInterruptedBySignalName(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	holder := start(t, "lock", name, "--", "sh", "-c", script)
	holder.waitOut(ctx, "ready")
	waiter := start(t, "lock", name, "--", "true")
	waitKeys(t, ctx, cli, name, 2)
	waiter.signal(syscall.SIGTERM)
	if code := waiter.wait(ctx); code != 128+int(syscall.SIGTERM) || !strings.Contains(waiter.stderr.String(), "lockstep lock: interrupted by SIGTERM") {
		t.Errorf("exit code %d, stderr %q; want %d and 'interrupted by SIGTERM'", code, waiter.stderr, 128+int(syscall.SIGTERM))
	}
}

func TestCleanPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		"lockstep: invalid session ttl":                        "invalid session ttl",
		"leaderjob: lockstep: invalid prefix":                  "invalid prefix",
		"election: campaign /x: lockstep: session lost: gone":  "campaign /x: session lost: gone",
		"etcdserver: request timed out":                        "etcdserver: request timed out",
		"queue: dequeue /q: lockstep: session lost: x: queue:": "dequeue /q: session lost: x: queue:",
	} {
		if got := cleanPrefixes(in); got != want {
			t.Errorf("cleanPrefixes(%q) = %q, want %q", in, got, want)
		}
	}
}

// An endpoint that accepts connections and is not etcd (here: closes them
// at once) is not final, so the wait runs its course; the error then says
// what gRPC saw instead of "context deadline exceeded".
func TestDialTimeoutSaysWhy(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	r := invoke(t, ctx, "lock", "--endpoints", "http://"+ln.Addr().String(), "--dial-timeout", "2s", "/x", "--", "true")
	r.wantCode(t, exitError, "lock")
	if !strings.Contains(r.stderr, "does not answer within 2s") || strings.Contains(r.stderr, "context deadline exceeded") {
		t.Errorf("stderr %q: want the cause, not the deadline", r.stderr)
	}
}

// A zero --dial-timeout would give up before the first dial: a usage error.
func TestZeroDialTimeout(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	r := invoke(t, ctx, "lock", "--endpoints", "http://127.0.0.1:1", "--dial-timeout", "0s", "/x", "--", "true")
	r.wantCode(t, exitUsage, "lock")
	if !strings.Contains(r.stderr, "--dial-timeout 0s: must be positive") {
		t.Errorf("stderr %q", r.stderr)
	}
}

// Durations take a bare number of seconds, as etcdctl's users type them.
func TestBareSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"2": 2 * time.Second, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second} {
		var d seconds
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q): %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	var d seconds
	if err := d.Set("soon"); err == nil {
		t.Errorf("Set(soon): no error")
	}
	ctx := testutil.Context(t, time.Minute)
	r := invoke(t, ctx, "lock", "--endpoints", "http://127.0.0.1:1", "--ttl", "-3", "/x", "--", "true")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--ttl -3s: must not be negative") {
		t.Fatalf("--ttl -3: exit %d, %q", r.code, r.stderr)
	}
}
