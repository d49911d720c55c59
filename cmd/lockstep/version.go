package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("version", "", `
Prints lockstep's version (the module version, or "(devel)" for a build
from a checkout, with its commit when the build recorded one), the etcd
client's, and the Go version it was built with.
`)
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 || len(cmd) > 0 {
		return f.usageError(stderr, "unexpected arguments %q", append(pos, cmd...))
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "lockstep (no build information)")
		return exitOK
	}
	version := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			version += " " + s.Value
		}
	}
	etcd := "unknown"
	for _, d := range bi.Deps {
		if d.Path == "go.etcd.io/etcd/client/v3" {
			etcd = d.Version
		}
	}
	fmt.Fprintf(stdout, "lockstep %s\netcd client %s\n%s\n", version, etcd, bi.GoVersion)
	return exitOK
}
