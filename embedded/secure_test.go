package embedded_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// clientWith returns a client of cfg, closed when the test ends.
func clientWith(t *testing.T, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// getWithin reads a key with a short deadline: what a client that cannot
// talk to the server gets.
func getWithin(cli *clientv3.Client, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := cli.Get(ctx, "k")
	return err
}

// WithTLS serves https only; ClientConfig trusts the generated authority;
// a client that does not, or speaks plain http, gets nowhere.
func TestTLS(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	srv := start(t, ctx, embedded.WithTLS())
	if !strings.HasPrefix(srv.Endpoints()[0], "https://") {
		t.Fatalf("endpoint %s, want https", srv.Endpoints()[0])
	}
	files := srv.TLS()
	if files == nil || files.CA == "" || files.Cert == "" || files.Key == "" {
		t.Fatalf("TLS files: %+v", files)
	}
	put(t, ctx, srv, "k", "v")

	strangers := clientWith(t, clientv3.Config{Endpoints: srv.Endpoints(), TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err := getWithin(strangers, time.Second); err == nil {
		t.Fatal("a client that does not trust the generated CA read the server")
	}
	plain := clientWith(t, clientv3.Config{Endpoints: []string{"http://" + strings.TrimPrefix(srv.Endpoints()[0], "https://")}})
	if err := getWithin(plain, time.Second); err == nil {
		t.Fatal("a plain http client read the server")
	}
}

// WithAuth turns on authentication: ClientConfig logs in as root, a client
// without credentials is refused, a wrong password too.
func TestAuth(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	srv := start(t, ctx, embedded.WithTLS(), embedded.WithAuth("s3cret"))
	put(t, ctx, srv, "k", "v")

	anon := srv.ClientConfig()
	anon.Username, anon.Password = "", ""
	if _, err := clientWith(t, anon).Put(ctx, "k", "w"); !errors.Is(err, rpctypes.ErrUserEmpty) && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("put without credentials: %v, want refused", err)
	}
	wrong := srv.ClientConfig()
	wrong.Password = "guess"
	if _, err := clientv3.New(wrong); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("client with a wrong password: %v, want ErrAuthFailed", err)
	}
	if got := get(t, ctx, srv, "k"); got != "v" {
		t.Fatalf("root reads %q, want v", got)
	}
}

// A WithDir server started again keeps its certificates and its users.
func TestTLSAndAuthSurviveRestart(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	dir := t.TempDir()
	opts := []embedded.Option{embedded.WithDir(dir), embedded.WithTLS(), embedded.WithAuth("s3cret"), embedded.WithoutFsync()}
	srv, err := embedded.Start(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	put(t, ctx, srv, "k", "v")
	ca := srv.TLS().CA
	srv.Close()
	srv, err = embedded.Start(ctx, opts...)
	if err != nil {
		t.Fatalf("start again: %v", err)
	}
	defer srv.Close()
	if srv.TLS().CA != ca {
		t.Fatalf("CA %s, was %s", srv.TLS().CA, ca)
	}
	if got := get(t, ctx, srv, "k"); got != "v" {
		t.Fatalf("after restart root reads %q, want v", got)
	}
}

// Past the backend quota the server refuses writes with NOSPACE.
func TestQuotaBackendBytes(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	srv := start(t, ctx, embedded.WithQuotaBackendBytes(1<<20))
	cli := clientWith(t, srv.ClientConfig())
	big := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		_, err := cli.Put(ctx, "k", big)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			return
		}
		if err != nil {
			t.Fatalf("put %d: %v, want ErrNoSpace in the end", i, err)
		}
		if i > 200 {
			t.Fatal("200 puts of 64 KiB fit a 1 MiB quota")
		}
	}
}

// WithAutoCompaction compacts on its own; WithConfig reaches any setting.
func TestAutoCompactionAndConfig(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	var seen *embed.Config
	srv := start(t, ctx, embedded.WithAutoCompaction("periodic", "1s"), embedded.WithConfig(func(c *embed.Config) { seen = c }))
	if seen == nil || seen.AutoCompactionMode != "periodic" || seen.AutoCompactionRetention != "1s" {
		t.Fatalf("WithConfig saw %+v", seen)
	}
	cli := clientWith(t, srv.ClientConfig())
	first, err := cli.Put(ctx, "k", "0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		_, err := cli.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the server never compacted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestSecureOptionErrors(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	for name, opts := range map[string][]embedded.Option{
		"empty root password":  {embedded.WithAuth("")},
		"negative quota":       {embedded.WithQuotaBackendBytes(-1)},
		"unknown compaction":   {embedded.WithAutoCompaction("hourly", "1")},
		"compaction, no value": {embedded.WithAutoCompaction("revision", "")},
		"http url with TLS":    {embedded.WithTLS(), embedded.WithClientURL("http://127.0.0.1:2379")},
	} {
		if srv, err := embedded.Start(ctx, opts...); !errors.Is(err, embedded.ErrInvalidOption) {
			if err == nil {
				srv.Close()
			}
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	if c, err := embedded.StartCluster(ctx, 3, embedded.WithTLS()); !errors.Is(err, embedded.ErrInvalidOption) {
		if err == nil {
			c.Close()
		}
		t.Errorf("a cluster with TLS: %v, want ErrInvalidOption", err)
	}
}
