package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lockstep-go/lockstep/barrier"
)

// doubleArgs parses what run, enter and leave share.
type doubleArgs struct {
	f     *cmdFlags
	conn  connFlags
	count *int
	wait  waitFlags
}

func newDoubleArgs(name, synopsis, about string) *doubleArgs {
	d := &doubleArgs{f: newFlags(name, synopsis, about)}
	d.conn.registerSession(d.f)
	d.count = d.f.Int("count", 0, "participants per round (required; every participant of NAME must give the same)")
	d.wait.register(d.f, "waiting for the others to arrive")
	return d
}

func runBarrierRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	d := newDoubleArgs("barrier run", "[flags] NAME --count N -- CMD [ARG...]", `
Enters a round of the double barrier NAME, waits until --count processes
have entered it, runs CMD, then leaves the round and waits until every
participant has left (finished its CMD, or died). Exits with CMD's code
once all are done. Rounds follow each other on the same NAME with no reset:
the next 'barrier run' of a worker enters the next round.

CMD gets LOCKSTEP_NAME, LOCKSTEP_ROUND (the same for every participant of
a round, increasing from round to round), LOCKSTEP_KEY and
LOCKSTEP_ENDPOINTS. If the session is lost while CMD runs, the others count
this participant as gone: CMD is stopped (SIGTERM, SIGKILL after --grace)
and lockstep exits 76.

example: 4 workers go through batch after batch together
  for batch in 1 2 3; do
    lockstep barrier run /barrier/batch --count 4 -- ./process "$batch" || exit
  done
`)
	var hf holdFlags
	hf.register(d.f)
	name, cmd, code, ok := d.parse(args, stdout, stderr, true)
	if !ok {
		return code
	}
	cli, s, err := d.conn.session(ctx)
	if err != nil {
		return fail(ctx, stderr, d.f.name, err)
	}
	defer cli.Close()
	defer s.Close()
	db, err := barrier.NewDouble(s, name, *d.count)
	if err != nil {
		return d.f.usageError(stderr, "%v", err)
	}
	if code, ok := d.enter(ctx, db, name, stderr); !ok {
		return code
	}
	env := append([]string{
		"LOCKSTEP_NAME=" + name,
		"LOCKSTEP_KEY=" + db.Key(),
		fmt.Sprintf("LOCKSTEP_ROUND=%d", db.Round()),
	}, d.conn.env()...)
	res := child{args: cmd, env: env, stdout: stdout, stderr: stderr, grace: hf.grace}.run(ctx, s.Done())
	if res.err != nil {
		fmt.Fprintf(stderr, "lockstep barrier run: %s\n", errText(res.err))
	}
	if res.stopped {
		fmt.Fprintf(stderr, "lockstep barrier run: session lost while CMD ran: %v (CMD exit code %d)\n", s.Err(), res.code)
		return exitLost
	}
	// Leave even after a failure, so that the others are not held up. After
	// a signal ctx has ended and Leave returns at once: the others count
	// this participant as having left.
	if err := db.Leave(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "lockstep barrier run: leave: %s\n", errText(err))
		if s.Err() != nil {
			return exitLost
		}
		if res.code == 0 {
			return exitError
		}
	}
	return res.code
}

// runBarrierRendezvous is enter and leave: one whole round, entered and
// left at once. A participant cannot outlive its process, so a separate
// enter and leave cannot be one participant; as two rounds they still give
// a script the double barrier's guarantee.
func runBarrierRendezvous(verb string) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		d := newDoubleArgs("barrier "+verb, "[flags] NAME --count N", `
Returns when --count processes have arrived at the double barrier NAME:
it enters a round and leaves it at once. 'enter' and 'leave' do the same;
two names so that a script reads as it works. Each of N workers calling
  lockstep barrier enter NAME --count N; work; lockstep barrier leave NAME --count N
starts its work only once all N are there, and goes past leave only once
all N have finished. Exits 75 if --timeout expires first.
`)
		name, _, code, ok := d.parse(args, stdout, stderr, false)
		if !ok {
			return code
		}
		cli, s, err := d.conn.session(ctx)
		if err != nil {
			return fail(ctx, stderr, d.f.name, err)
		}
		defer cli.Close()
		defer s.Close()
		db, err := barrier.NewDouble(s, name, *d.count)
		if err != nil {
			return d.f.usageError(stderr, "%v", err)
		}
		if code, ok := d.enter(ctx, db, name, stderr); !ok {
			return code
		}
		if err := db.Leave(ctx); err != nil {
			return fail(ctx, stderr, d.f.name, err)
		}
		return exitOK
	}
}

func (d *doubleArgs) parse(args []string, stdout, stderr io.Writer, wantCmd bool) (name string, cmd []string, code int, ok bool) {
	pos, cmd, code, ok := d.f.parse(args, stdout, stderr)
	switch {
	case !ok:
		return "", nil, code, false
	case len(pos) != 1:
		return "", nil, d.f.usageError(stderr, "want one NAME, got %d arguments", len(pos)), false
	case *d.count < 1:
		return "", nil, d.f.usageError(stderr, "--count must be at least 1"), false
	case wantCmd && len(cmd) == 0:
		return "", nil, d.f.usageError(stderr, "want a CMD after --"), false
	case !wantCmd && cmd != nil:
		return "", nil, d.f.usageError(stderr, "takes no CMD"), false
	}
	return pos[0], cmd, 0, true
}

// enter enters a round; ok is false if it did not, with the exit code.
func (d *doubleArgs) enter(ctx context.Context, db *barrier.DoubleBarrier, name string, stderr io.Writer) (code int, ok bool) {
	wctx, cancel := d.wait.context(ctx)
	defer cancel()
	err := db.Enter(wctx)
	if d.wait.timedOut(ctx, err) {
		fmt.Fprintf(stderr, "lockstep %s: fewer than %d participants of %s after %v\n", d.f.name, *d.count, name, d.wait.timeout)
		return exitBusy, false
	}
	if err != nil {
		return fail(ctx, stderr, d.f.name, err), false
	}
	return 0, true
}
