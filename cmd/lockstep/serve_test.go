package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
