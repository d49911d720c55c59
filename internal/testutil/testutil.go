// Package testutil is the test harness every lockstep package shares: one
// embedded etcd per test binary, clients and sessions cleaned up with the
// test, a goroutine leak check after the package's tests, RPC counting and
// the paths of real etcd binaries for interop tests.
package testutil

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
)

var (
	sharedMu  sync.Mutex
	shared    *embedded.Server
	sharedErr error
)

// Main runs a package's tests, runs after (a summary, say), closes the
// shared server and then fails the run if any goroutine is left over. Call
// it from TestMain.
func Main(m *testing.M, after ...func()) {
	code := m.Run()
	for _, f := range after {
		f()
	}
	sharedMu.Lock()
	if shared != nil {
		shared.Close()
		shared = nil
	}
	sharedMu.Unlock()
	if code == 0 {
		if err := goleak.Find(LeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left over after the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// LeakOptions are the goroutines that belong to the Go runtime or to
// libraries' process-wide state, not to anything a test started.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		// glog-style flush daemon of klog, pulled in by etcd's server.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	}
}

// Server returns the embedded etcd shared by the tests of this binary,
// starting it on first use. Tests must not close it.
func Server(t testing.TB) *embedded.Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared, sharedErr = embedded.Start(ctx, embedded.WithoutFsync())
	}
	if sharedErr != nil {
		t.Fatalf("start embedded etcd: %v", sharedErr)
	}
	return shared
}

// Client returns a new client of the shared server, closed when the test
// ends.
func Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return ClientWith(t, Server(t).ClientConfig())
}

// ClientWith returns a new client made from cfg, closed when the test ends.
func ClientWith(t testing.TB, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Session returns a new session on cli with the given options (default TTL
// if none), closed when the test ends.
func Session(t testing.TB, cli *clientv3.Client, opts ...lockstep.SessionOption) *lockstep.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := lockstep.NewSession(ctx, cli, opts...)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Context returns a context that ends after d or when the test ends, so
// that every wait in a test is bounded.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var prefixSeq atomic.Int64

// Prefix returns a key prefix no other test in this binary uses.
func Prefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/test/%s-%d", name, prefixSeq.Add(1))
}

// Revoke ends a session the hard way, as its lease expiring would: the
// lease is revoked through another client, so everything it owned is
// deleted by the server while the session itself still believes in it
// until its next keepalive.
func Revoke(t testing.TB, cli *clientv3.Client, s *lockstep.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Revoke(ctx, s.Lease()); err != nil {
		t.Fatalf("revoke lease %x: %v", int64(s.Lease()), err)
	}
}
