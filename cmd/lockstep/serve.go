package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	listen := f.String("listen-client-url", "http://127.0.0.1:2379", "URL to serve clients on")
	name := f.String("name", "lockstep", "member name")
	noFsync := f.Bool("unsafe-no-fsync", false, "skip fsync: faster, and a machine crash can lose acknowledged writes")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 || len(cmd) > 0 {
		return f.usageError(stderr, "unexpected arguments %q", append(pos, cmd...))
	}

	opts := []embedded.Option{embedded.WithClientURL(*listen), embedded.WithName(*name)}
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
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	srv.Close()
	fmt.Fprintln(stdout, "stopped")
	return exitOK
}
