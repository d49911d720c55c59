package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
)

var barrierCommands = []command{
	{"hold", "close the gate NAME; with CMD, only while CMD runs", runBarrierHold},
	{"release", "open the gate NAME, whoever closed it", runBarrierRelease},
	{"wait", "wait until the gate NAME is open", runBarrierWait},
	{"run", "enter a round of N, run CMD, leave when all N are done", runBarrierRun},
	{"enter", "wait until N processes have arrived (a whole round)", runBarrierRendezvous("enter")},
	{"leave", "the same rendezvous, named for the end of a batch", runBarrierRendezvous("leave")},
}

func runBarrier(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "barrier", `
A gate (hold, release, wait) is one etcd key: held while it exists, as in
etcd's recipe.Barrier ('etcdctl put NAME ""' holds it, 'etcdctl del NAME'
releases it).

A double barrier lines up N processes, round after round, on one NAME.
A participant lives as long as the lockstep process that entered, so:
  run NAME --count N -- CMD   enters a round, runs CMD once all N are in,
                              and returns when all N have finished theirs;
  enter / leave NAME --count N
                              each is one whole round: it returns when N
                              processes have arrived. Called around a batch
                              (enter; work; leave) by each of N workers, no
                              worker starts before all N are there and none
                              goes past leave before all N have finished.
`, barrierCommands, args, stdout, stderr)
}

// runGroup dispatches to a subcommand of a command group.
func runGroup(ctx context.Context, group, about string, subs []command, args []string, stdout, stderr io.Writer) int {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "usage: lockstep %s <command> [flags] [args]\n", group)
		fmt.Fprintf(w, "\n%s commands:\n", group)
		for _, c := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "%s\nRun 'lockstep %s <command> --help' for a command's flags.\n", about, group)
	}
	if len(args) == 0 {
		help(stderr)
		return exitUsage
	}
	if a := args[0]; a == "-h" || a == "--help" || a == "-help" || a == "help" {
		help(stdout)
		return exitOK
	}
	for _, c := range subs {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "lockstep %s: unknown command %q\n\n", group, args[0])
	help(stderr)
	return exitUsage
}

// gateArgs parses the arguments every gate command shares.
func gateArgs(f *cmdFlags, args []string, stdout, stderr io.Writer) (name string, cmd []string, code int, ok bool) {
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return "", nil, code, false
	}
	if len(pos) != 1 {
		return "", nil, f.usageError(stderr, "want one NAME, got %d arguments", len(pos)), false
	}
	return pos[0], cmd, 0, true
}

func runBarrierHold(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("barrier hold", "[flags] NAME [-- CMD [ARG...]]", `
Closes the gate NAME: 'lockstep barrier wait NAME' blocks until it is
released. Exits 75 if the gate is already closed.

Without CMD the gate stays closed after lockstep exits, until someone runs
'lockstep barrier release NAME'. With CMD it is closed only while CMD runs:
it opens when CMD exits (lockstep exits with CMD's code), and if lockstep
dies, when its session's lease expires (--ttl). If the hold is lost while
CMD runs (its lease ends, or someone releases the gate), CMD is stopped as
'lock' stops it and lockstep exits 76; it never opens a hold that someone
else took since.

example: hold the workers while a migration runs
  lockstep barrier hold /gates/schema -- ./migrate.sh
`)
	var conn connFlags
	conn.registerSession(f)
	var hf holdFlags
	hf.register(f)
	name, cmd, code, ok := gateArgs(f, args, stdout, stderr)
	if !ok {
		return code
	}
	if cmd != nil && len(cmd) == 0 {
		return f.usageError(stderr, "nothing to run after --")
	}
	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	var opts []barrier.Option
	var s *lockstep.Session
	if cmd != nil {
		if s, err = lockstep.NewSession(ctx, cli, lockstep.WithTTL(conn.ttl)); err != nil {
			return fail(ctx, stderr, f.name, err)
		}
		defer s.Close()
		opts = append(opts, barrier.WithSession(s))
	}
	b, err := barrier.New(cli, name, opts...)
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}
	h, err := b.Hold(ctx)
	if errors.Is(err, barrier.ErrHeld) {
		fmt.Fprintf(stderr, "lockstep barrier hold: %s is already held\n", name)
		return exitBusy
	} else if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	if cmd == nil {
		return exitOK
	}
	env := append([]string{"LOCKSTEP_NAME=" + name}, conn.env()...)
	return holding{cmd: "barrier hold", what: "gate " + name, own: h, release: h.Release, env: env}.
		run(ctx, cmd, hf.grace, stdout, stderr)
}

func runBarrierRelease(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("barrier release", "[flags] NAME", `
Opens the gate NAME, whoever closed it, and lets every waiter through.
Releasing an open gate is not an error.
`)
	var conn connFlags
	conn.register(f)
	name, _, code, ok := gateArgs(f, args, stdout, stderr)
	if !ok {
		return code
	}
	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	b, err := barrier.New(cli, name)
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}
	if err := b.Release(ctx); err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}

func runBarrierWait(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("barrier wait", "[flags] NAME", `
Returns as soon as the gate NAME is open: at once if it is, otherwise when
the hold it found is released. Exits 75 if --timeout expires first.
`)
	var conn connFlags
	conn.register(f)
	var wait waitFlags
	wait.register(f, "waiting")
	name, _, code, ok := gateArgs(f, args, stdout, stderr)
	if !ok {
		return code
	}
	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	b, err := barrier.New(cli, name)
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}
	wctx, cancel := wait.context(ctx)
	defer cancel()
	err = b.Wait(wctx)
	if wait.timedOut(ctx, err) {
		fmt.Fprintf(stderr, "lockstep barrier wait: %s still held after %v\n", name, wait.timeout)
		return exitBusy
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}
