package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lockstep-go/lockstep/embedded"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockstep serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "keep etcd's data here across restarts (default: a temporary directory removed on exit)")
	listen := fs.String("listen-client-url", "http://127.0.0.1:2379", "URL to serve clients on")
	name := fs.String("name", "lockstep", "member name")
	noFsync := fs.Bool("unsafe-no-fsync", false, "skip fsync: faster, and a machine crash can lose acknowledged writes")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lockstep serve [flags]")
		fmt.Fprintln(stderr, "\nRuns a single etcd member in the foreground until Ctrl-C or SIGTERM.")
		fmt.Fprintln(stderr, "Point other lockstep commands at it with --endpoints or LOCKSTEP_ENDPOINTS.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockstep serve: unexpected arguments %q\n", fs.Args())
		return exitUsage
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
