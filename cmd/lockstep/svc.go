package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/discovery"
)

// svcPrefix is where the svc commands keep and look for instances unless
// --prefix says otherwise: PREFIX/SERVICE/ID. It is one constant so that
// register, list and watch meet without a flag.
const svcPrefix = "/lockstep/services"

var svcCommands = []command{
	{"register", "register an instance of SERVICE at ADDR while CMD runs", runSvcRegister},
	{"list", "print the instances of SERVICE", runSvcList},
	{"watch", "print the instances of SERVICE, then the whole list again at each change", runSvcWatch},
}

func runSvc(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "svc", `
Service discovery (package discovery): an instance is registered under
PREFIX/SERVICE/ID (default prefix `+svcPrefix+`) with a lease of its
own, in etcd naming's JSON, so etcd's endpoints.Manager and etcd:///
resolver read it too; lockstep's gRPC resolver routes by weight and never
to a draining instance while a serving one is ready.
`, svcCommands, args, stdout, stderr)
}

// svcPrefixFlag adds --prefix, the same for every svc command.
func svcPrefixFlag(f *cmdFlags) *string {
	return f.String("prefix", svcPrefix, "the registry's key prefix: instances live under PREFIX/SERVICE/ID")
}

// svcInputError reports whether err is discovery's (or lockstep's) refusal
// of an argument, made before any write: a usage error, not a failure.
func svcInputError(err error) bool {
	for _, target := range []error{discovery.ErrInvalidService, discovery.ErrInvalidID, discovery.ErrInvalidAddr,
		discovery.ErrInvalidWeight, discovery.ErrInvalidOption, lockstep.ErrInvalidPrefix, lockstep.ErrInvalidTTL} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// svcServiceArg checks the positional arguments of list and watch.
func svcServiceArg(f *cmdFlags, pos []string, stderr io.Writer) (string, int, bool) {
	if len(pos) != 1 {
		return "", f.usageError(stderr, "want one SERVICE, got %d arguments", len(pos)), false
	}
	return pos[0], 0, true
}

// openWatch connects and reads the instances of service. done closes the
// watcher, then the client.
func openWatch(ctx context.Context, f *cmdFlags, conn *connFlags, prefix, service string, stderr io.Writer) (w *discovery.Watcher, done func(), code int, ok bool) {
	cli, err := conn.client(ctx)
	if err != nil {
		return nil, nil, fail(ctx, stderr, f.name, err), false
	}
	w, err = discovery.Watch(ctx, cli, prefix, service)
	if err != nil {
		cli.Close()
		if svcInputError(err) {
			return nil, nil, f.usageError(stderr, "%v", err), false
		}
		return nil, nil, fail(ctx, stderr, f.name, err), false
	}
	return w, func() {
		w.Close()
		cli.Close()
	}, 0, true
}

func runSvcList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("svc list", "[flags] SERVICE", `
Prints the instances of SERVICE, sorted by ID, one line each under a
header: ID, ADDR, WEIGHT (0 shows as 1, as the balancer reads it), ZONE,
VERSION, STATUS (serving or draining), LEASE (hex; "-" for a key written
without one) and META (key=value,...). "-" stands for an empty field.

With --json it prints one JSON array instead, an object per instance:
{"service","id","addr","weight","zone","version","status","metadata",
"key","revision","lease"}; revision is the key's ModRevision, lease a hex
string ("0" for none), so that no JSON reader rounds it.

example:
  lockstep svc list greeter --json | jq -r '.[] | select(.status == "serving") | .addr'
`)
	var conn connFlags
	conn.register(f)
	asJSON := f.Bool("json", false, "print a JSON array")
	prefix := svcPrefixFlag(f)
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	service, code, ok := svcServiceArg(f, pos, stderr)
	if !ok {
		return code
	}
	w, done, code, ok := openWatch(ctx, f, &conn, *prefix, service, stderr)
	if !ok {
		return code
	}
	defer done()
	if err := printInstances(stdout, w.Instances(), *asJSON); err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}

func runSvcWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("svc watch", "[flags] SERVICE", `
Prints the instances of SERVICE as 'svc list' does, then the whole list
again each time it changes, until SIGINT or SIGTERM (exit 0). Each list
starts with a "--- SERVICE: N instances" line; with --json each list is
one JSON array on a line of its own. A list that changes faster than it is
printed is printed in its latest state: every line is a list that etcd
held, not necessarily every list etcd held.
`)
	var conn connFlags
	conn.register(f)
	asJSON := f.Bool("json", false, "print each list as a JSON array on one line")
	prefix := svcPrefixFlag(f)
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	service, code, ok := svcServiceArg(f, pos, stderr)
	if !ok {
		return code
	}
	w, done, code, ok := openWatch(ctx, f, &conn, *prefix, service, stderr)
	if !ok {
		return code
	}
	defer done()
	for list := range w.Updates(ctx) {
		if !*asJSON {
			fmt.Fprintf(stdout, "--- %s: %s\n", service, plural(len(list), "instance"))
		}
		if err := printInstances(stdout, list, *asJSON); err != nil {
			return fail(ctx, stderr, f.name, err)
		}
	}
	if ctx.Err() != nil {
		return exitOK
	}
	return fail(ctx, stderr, f.name, w.Err())
}

// svcInstanceJSON is an instance as --json prints it: field names of its
// own, so that the output does not change with the Go type's.
type svcInstanceJSON struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   int               `json:"weight"`
	Zone     string            `json:"zone"`
	Version  string            `json:"version"`
	Status   discovery.Status  `json:"status"`
	Metadata map[string]string `json:"metadata"`
	Key      string            `json:"key"`
	Revision int64             `json:"revision"`
	Lease    string            `json:"lease"` // hex: a JSON number would lose digits in most readers
}

// printInstances prints list as a table, or as one line of JSON.
func printInstances(w io.Writer, list []discovery.Instance, asJSON bool) error {
	if asJSON {
		out := make([]svcInstanceJSON, 0, len(list))
		for _, in := range list {
			md := in.Metadata
			if md == nil {
				md = map[string]string{}
			}
			out = append(out, svcInstanceJSON{
				Service: in.Service, ID: in.ID, Addr: in.Addr, Weight: in.EffectiveWeight(),
				Zone: in.Zone, Version: in.Version, Status: in.Status, Metadata: md,
				Key: in.Key, Revision: in.Revision, Lease: fmt.Sprintf("%x", int64(in.Lease)),
			})
		}
		return printJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tWEIGHT\tZONE\tVERSION\tSTATUS\tLEASE\tMETA")
	for _, in := range list {
		lease := "-"
		if in.Lease != 0 {
			lease = fmt.Sprintf("%x", int64(in.Lease))
		}
		var meta []string
		for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
			meta = append(meta, k+"="+in.Metadata[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Addr, in.EffectiveWeight(),
			orDash(in.Zone), orDash(in.Version), in.Status, lease, orDash(strings.Join(meta, ",")))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
