package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// lockstep serve prints its endpoint, a real etcdctl writes and reads
// through it, SIGTERM stops it cleanly, and its data dir keeps the write
// across a restart.
func TestServeWithEtcdctl(t *testing.T) {
	etcdctl := testutil.Etcdctl(t)
	ctx := testutil.Context(t, 2*time.Minute)
	dir := filepath.Join(t.TempDir(), "data")
	url := "http://" + freeAddr(t)

	serve := func() (*proc, string) {
		p := startCmd(t, built(t, "lockstep"),
			[]string{"serve", "--listen-client-url", url, "--data-dir", dir, "--unsafe-no-fsync"}, os.Environ(), nil)
		p.waitOut(ctx, "press Ctrl-C to stop")
		m := regexp.MustCompile(`etcd serving clients on (\S+) `).FindStringSubmatch(p.stdout.String())
		if m == nil || m[1] != url {
			t.Fatalf("serve printed no endpoint %s:\n%s", url, p.stdout)
		}
		return p, m[1]
	}
	stop := func(p *proc) {
		p.signal(syscall.SIGTERM)
		if code := p.wait(ctx); code != exitOK {
			t.Fatalf("serve after SIGTERM: exit code %d, want %d\nstderr:\n%s", code, exitOK, p.stderr)
		}
		p.waitOut(ctx, "stopped")
	}
	etcdctlRun := func(endpoint string, args ...string) string {
		out, err := exec.CommandContext(ctx, etcdctl, append([]string{"--endpoints=" + endpoint}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	p, endpoint := serve()
	if out := etcdctlRun(endpoint, "put", "greeting", "hello"); strings.TrimSpace(out) != "OK" {
		t.Fatalf("etcdctl put: %q", out)
	}
	if out := etcdctlRun(endpoint, "get", "greeting", "--print-value-only"); strings.TrimSpace(out) != "hello" {
		t.Fatalf("etcdctl get: %q, want hello", out)
	}
	stop(p)

	p, endpoint = serve()
	if out := etcdctlRun(endpoint, "get", "greeting", "--print-value-only"); strings.TrimSpace(out) != "hello" {
		t.Fatalf("etcdctl get after restart on the same data dir: %q, want hello", out)
	}
	stop(p)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve --tls --auth prints the environment and the etcdctl command line
// that reach it; lockstep (with LOCKSTEP_* or etcdctl's ETCDCTL_* names)
// and etcdctl work with them; a CA that does not match and a wrong
// password fail at once and say why.
func TestServeTLSAuth(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	url := "https://" + freeAddr(t)
	p := startCmd(t, built(t, "lockstep"), []string{"serve", "--tls", "--auth", "--listen-client-url", url, "--unsafe-no-fsync"}, os.Environ(), nil)
	p.waitOut(ctx, "press Ctrl-C to stop")
	out := p.stdout.String()
	exports := regexp.MustCompile(`export (.*)\n`).FindStringSubmatch(out)
	etcdctlLine := regexp.MustCompile(`etcdctl (.*)\n`).FindStringSubmatch(out)
	if exports == nil || etcdctlLine == nil {
		t.Fatalf("serve printed no connection lines:\n%s", out)
	}
	vars := strings.Fields(exports[1])
	if len(vars) != 3 || !strings.HasPrefix(vars[0], "LOCKSTEP_ENDPOINTS="+url) {
		t.Fatalf("export line %q", exports[1])
	}
	run := func(env []string, args ...string) result {
		t.Helper()
		q := startCmd(t, built(t, "lockstep"), args, append(os.Environ(), env...), nil)
		code := q.wait(ctx)
		return result{code, q.stdout.String(), q.stderr.String()}
	}
	r := run(vars, "lock", "/tls/x", "--", "echo", "held")
	r.wantCode(t, exitOK)
	if r.stdout != "held\n" {
		t.Fatalf("lock over TLS with auth: %q", r.stdout)
	}
	etcdctlVars := make([]string, len(vars))
	for i, v := range vars {
		etcdctlVars[i] = strings.Replace(v, "LOCKSTEP_", "ETCDCTL_", 1)
	}
	run(etcdctlVars, "queue", "push", "/tls/q", "job").wantCode(t, exitOK)

	wrongCA := append(slices.Clone(vars), "LOCKSTEP_CACERT=/etc/ssl/certs/ca-certificates.crt")
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		r = run(wrongCA, "lock", "/tls/x", "--", "true")
		if r.code != exitError || !strings.Contains(r.stderr, "x509") {
			t.Fatalf("a CA that did not sign the server's certificate: exit %d, %q; want 1 and the TLS error", r.code, r.stderr)
		}
	}
	r = run(vars[:2], "lock", "/tls/x", "--", "true") // no user
	if r.code != exitError || !strings.Contains(r.stderr, "user name is empty") || !strings.Contains(r.stderr, "--user") {
		t.Fatalf("no user: exit %d, %q; want 1, the reason and the flag that gives one", r.code, r.stderr)
	}
	r = run(append(slices.Clone(vars), "LOCKSTEP_USER=root:wrong"), "lock", "/tls/x", "--", "true")
	if r.code != exitError || !strings.Contains(r.stderr, "authentication failed") {
		t.Fatalf("a wrong password: exit %d, %q; want 1 and the reason", r.code, r.stderr)
	}

	etcdctl := testutil.Etcdctl(t)
	conn, _, _ := strings.Cut(etcdctlLine[1], " get ")
	args := append(strings.Fields(conn), "get", "/tls/q/", "--prefix", "--print-value-only")
	got, err := exec.CommandContext(ctx, etcdctl, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(got), "job") {
		t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, got)
	}
}
