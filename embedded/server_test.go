package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv("EMBEDDED_HELPER_START") != "" {
		os.Exit(helperStart())
	}
	testutil.Main(m)
}

func start(t *testing.T, ctx context.Context, opts ...embedded.Option) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(ctx, append([]embedded.Option{embedded.WithoutFsync()}, opts...)...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func put(t *testing.T, ctx context.Context, srv *embedded.Server, key, value string) {
	t.Helper()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, ctx context.Context, srv *embedded.Server, key string) string {
	t.Helper()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestStartServesAndCloseCleansUp(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	srv, err := embedded.Start(ctx, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	if eps := srv.Endpoints(); len(eps) != 1 || !strings.HasPrefix(eps[0], "http://127.0.0.1:") {
		t.Fatalf("Endpoints: got %v, want one loopback URL", eps)
	}
	put(t, ctx, srv, "k", "v")
	if got := get(t, ctx, srv, "k"); got != "v" {
		t.Fatalf("get: got %q, want %q", got, "v")
	}
	cli, err := srv.Client() // left open on purpose: Close must close it
	if err != nil {
		t.Fatal(err)
	}
	cli.Watch(ctx, "open-watch")
	dir := srv.Dir()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir %s still exists after Close (stat: %v)", dir, err)
	}
}

func TestDataSurvivesRestartOnSameDir(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	dir := t.TempDir()
	first, err := embedded.Start(ctx, embedded.WithDir(dir), embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	put(t, ctx, first, "kept", "yes")
	first.Close()
	second := start(t, ctx, embedded.WithDir(dir))
	if got := get(t, ctx, second, "kept"); got != "yes" {
		t.Fatalf("after restart: got %q, want %q", got, "yes")
	}
}

func TestStartErrors(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)

	busyDir := t.TempDir()
	start(t, ctx, embedded.WithDir(busyDir))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busyURL := "http://" + l.Addr().String()

	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		opts []embedded.Option
		want []error
	}{
		{"dir held by another server", ctx, []embedded.Option{embedded.WithDir(busyDir)}, []error{embedded.ErrDirInUse}},
		{"client port in use", ctx, []embedded.Option{embedded.WithClientURL(busyURL)}, []error{embedded.ErrPortInUse}},
		{"not ready before ctx ends", cancelled, nil, []error{embedded.ErrNotReady, context.Canceled}},
		{"empty name", ctx, []embedded.Option{embedded.WithName("")}, []error{embedded.ErrInvalidOption}},
		{"malformed client url", ctx, []embedded.Option{embedded.WithClientURL("127.0.0.1")}, []error{embedded.ErrInvalidOption}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := embedded.Start(tt.ctx, append(tt.opts, embedded.WithoutFsync())...)
			if err == nil {
				srv.Close()
				t.Fatal("Start succeeded")
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Start: got %v, want it to match %v", err, want)
				}
			}
		})
	}
}

// Many servers starting at once, in this process and in other processes,
// must each get their own ports and directories.
func TestConcurrentStartsDoNotCollide(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	const inProcess, processes = 4, 3

	var cmds []*exec.Cmd
	for range processes {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "EMBEDDED_HELPER_START=3")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper process output:\n%s", out.String())
			}
		})
		cmds = append(cmds, cmd)
	}

	servers := make([]*embedded.Server, inProcess)
	errs := make([]error, inProcess)
	var wg sync.WaitGroup
	for i := range inProcess {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = embedded.Start(ctx, embedded.WithoutFsync())
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, srv := range servers {
		if errs[i] != nil {
			t.Errorf("server %d: %v", i, errs[i])
			continue
		}
		defer srv.Close()
		for _, k := range []string{srv.Endpoints()[0], srv.Dir()} {
			if seen[k] {
				t.Errorf("two servers share %s", k)
			}
			seen[k] = true
		}
		put(t, ctx, srv, "k", fmt.Sprint(i))
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v", i, err)
		}
	}
}

// helperStart runs in a child process: it starts several servers at once,
// writes to each, and exits non-zero on any failure.
func helperStart() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := startAndWrite(ctx)
			if err != nil {
				mu.Lock()
				failed++
				fmt.Fprintln(os.Stderr, "start:", err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return 1
	}
	return 0
}

func startAndWrite(ctx context.Context) error {
	srv, err := embedded.Start(ctx, embedded.WithoutFsync())
	if err != nil {
		return err
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		return err
	}
	_, err = cli.Put(ctx, "k", "v")
	return err
}

func TestDirIsKeptWhenGiven(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "data")
	srv, err := embedded.Start(ctx, embedded.WithDir(dir), embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := os.Stat(filepath.Join(dir, "member")); err != nil {
		t.Fatalf("data dir given with WithDir was not kept: %v", err)
	}
}
