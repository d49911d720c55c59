package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockstep-go/lockstep/semaphore"
)

const semAbout = `
Runs CMD while holding one of the --limit permits of the semaphore NAME, then
gives the permit back: at most N commands run at once across every process
that uses NAME with the same limit (a different limit is an error). Permits
are granted first come, first served.

CMD gets LOCKSTEP_TOKEN (the permit's fencing token), LOCKSTEP_KEY,
LOCKSTEP_NAME, LOCKSTEP_LEASE, LOCKSTEP_ENDPOINTS and LOCKSTEP_LIMIT.
Loss, --try, --timeout, signals and exit codes work as for 'lockstep lock';
without CMD the permit is held until SIGINT or SIGTERM.

example: at most 3 dumps against the database at once
  lockstep sem /sem/db-dump --limit 3 -- pg_dump ...
`

func runSem(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("sem", "[flags] NAME --limit N [-- CMD [ARG...]]", semAbout)
	var conn connFlags
	conn.registerSession(f)
	limit := f.Int("limit", 0, "number of permits (required; every user of NAME must give the same)")
	try := f.Bool("try", false, "exit 75 at once if no permit is free or others are waiting")
	var wait waitFlags
	wait.register(f, "waiting for a permit")
	var hf holdFlags
	hf.register(f)
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return f.usageError(stderr, "want one NAME, got %d arguments", len(pos))
	}
	if *limit < 1 {
		return f.usageError(stderr, "--limit must be at least 1")
	}
	name := pos[0]
	if err := checkName(name); err != nil {
		return f.usageError(stderr, "%v", err)
	}

	cli, s, err := conn.session(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	defer s.Close()
	sem, err := semaphore.New(s, name, *limit)
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}

	var p *semaphore.Permit
	if *try {
		p, err = sem.TryAcquire(ctx)
		if errors.Is(err, semaphore.ErrNoPermit) {
			fmt.Fprintf(stderr, "lockstep sem: %s: all %d permits are taken or waited for\n", name, *limit)
			return exitBusy
		}
	} else {
		wctx, cancel := wait.context(ctx)
		p, err = sem.Acquire(wctx)
		cancel()
		if wait.timedOut(ctx, err) {
			fmt.Fprintf(stderr, "lockstep sem: %s: no permit after %v\n", name, wait.timeout)
			return exitBusy
		}
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}

	env := append(ownershipEnv(name, p, s), fmt.Sprintf("LOCKSTEP_LIMIT=%d", *limit))
	h := holding{cmd: f.name, what: "permit of " + name, own: p, release: p.Release, env: append(env, conn.env()...)}
	return h.run(ctx, cmd, hf.grace, stdout, stderr)
}
