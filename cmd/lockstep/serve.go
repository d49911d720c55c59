package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lockstep-go/lockstep/embedded"
)

const serveAbout = `
Runs a single etcd member in the foreground until Ctrl-C or SIGTERM.
Point other lockstep commands at it with --endpoints or LOCKSTEP_ENDPOINTS.
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("serve", "[flags]", serveAbout)
	dataDir := f.String("data-dir", "", "keep etcd's data here across restarts (default: a temporary directory removed on exit)")
	listen := f.String("listen-client-url", "", "URL to serve clients on (default http://127.0.0.1:2379, https with --tls)")
	name := f.String("name", "lockstep", "member name")
	noFsync := f.Bool("unsafe-no-fsync", false, "skip fsync: faster, and a machine crash can lose acknowledged writes")
	useTLS := f.Bool("tls", false, "serve clients over TLS, with a CA and certificates generated in the data dir")
	auth := f.Bool("auth", false, "turn on authentication, with a user root")
	rootPassword := f.String("root-password", "", "root's password with --auth (default: generated, and printed once)")
	compactMode := f.String("auto-compaction-mode", "periodic", "periodic (keep a time span) or revision (keep a number of revisions)")
	compactKeep := f.String("auto-compaction-retention", "", "what --auto-compaction-mode keeps, as etcd takes it: 1h, or a number (default: no auto-compaction)")
	quota := f.Int64("quota-backend-bytes", 0, "backend quota; past it etcd refuses writes that add data (default: etcd's, 2 GiB)")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 || len(cmd) > 0 {
		return f.usageError(stderr, "unexpected arguments %q", append(pos, cmd...))
	}
	if *listen == "" {
		*listen = "http://127.0.0.1:2379"
		if *useTLS {
			*listen = "https://127.0.0.1:2379"
		}
	}

	opts := []embedded.Option{embedded.WithClientURL(*listen), embedded.WithName(*name)}
	if *useTLS {
		opts = append(opts, embedded.WithTLS())
	}
	if *auth {
		if *rootPassword == "" {
			*rootPassword = newPassword()
		}
		opts = append(opts, embedded.WithAuth(*rootPassword))
	}
	if *compactKeep != "" {
		opts = append(opts, embedded.WithAutoCompaction(*compactMode, *compactKeep))
	}
	if *quota != 0 {
		opts = append(opts, embedded.WithQuotaBackendBytes(*quota))
	}
	if *dataDir != "" {
		opts = append(opts, embedded.WithDir(*dataDir))
	}
	if *noFsync {
		opts = append(opts, embedded.WithoutFsync())
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := embedded.Start(startCtx, opts...)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "lockstep serve: %s\n", errText(err))
		if errors.Is(err, embedded.ErrInvalidOption) {
			return exitUsage
		}
		return exitError
	}
	fmt.Fprintf(stdout, "etcd serving clients on %s (data in %s)\n", srv.Endpoints()[0], srv.Dir())
	if *useTLS || *auth {
		printConnect(stdout, srv, *auth, *rootPassword)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	srv.Close()
	fmt.Fprintln(stdout, "stopped")
	return exitOK
}

// newPassword is a random password for root: 128 bits, hex.
func newPassword() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// printConnect prints how to reach a server with TLS or authentication:
// the environment for lockstep, then the same for etcdctl.
func printConnect(w io.Writer, srv *embedded.Server, auth bool, password string) {
	vars := []string{"LOCKSTEP_ENDPOINTS=" + srv.Endpoints()[0]}
	flags := []string{"--endpoints " + srv.Endpoints()[0]}
	if t := srv.TLS(); t != nil {
		vars = append(vars, "LOCKSTEP_CACERT="+t.CA)
		flags = append(flags, "--cacert "+t.CA)
	}
	if auth {
		vars = append(vars, "LOCKSTEP_USER=root:"+password)
		flags = append(flags, "--user root:"+password)
	}
	fmt.Fprintf(w, "connect with:\n  export %s\n  lockstep status\n  etcdctl %s get / --prefix --keys-only\n",
		strings.Join(vars, " "), strings.Join(flags, " "))
}
