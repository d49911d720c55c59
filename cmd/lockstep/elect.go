package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/leaderjob"
)

const electAbout = `
Campaigns to lead the election NAME and runs CMD only while leader. Run it
on every replica: one runs CMD, the others wait in line. If leadership is
lost (the session cannot renew its lease, the key is deleted), CMD's process
group gets SIGTERM, then SIGKILL after --grace, and lockstep campaigns again.
The election is etcd's: 'etcdctl elect -l NAME' shows the leader's --id.

What CMD's exit means while it leads (--policy):
  stop-when-done  exit 0: resign, lockstep exits 0. Other codes: resign,
                  back off, campaign again (another replica may take over).
  run-again       CMD is started again, keeping leadership (after a back-off
                  if it failed). lockstep runs until a signal.
  recampaign      resign and campaign again at the back of the line, so the
                  others get a turn. lockstep runs until a signal.

CMD gets LOCKSTEP_TOKEN (the term's fencing token: strictly increasing from
one leader to the next), LOCKSTEP_KEY, LOCKSTEP_NAME, LOCKSTEP_LEASE,
LOCKSTEP_ID and LOCKSTEP_ENDPOINTS. On SIGINT or SIGTERM lockstep forwards
the signal to CMD, resigns (the next replica takes over at once) and exits
with CMD's code. Without CMD, lockstep prints LOCKSTEP_KEY=... lines each
time it is elected and leads until a signal.

example, on each replica:
  lockstep elect /elect/index-builder --id "$(hostname)" -- ./build-index
`

func runElect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("elect", "[flags] NAME [-- CMD [ARG...]]", electAbout)
	var conn connFlags
	conn.registerSession(f)
	id := f.String("id", "", "the value to campaign with: who this is (default host-pid)")
	policyName := f.String("policy", "stop-when-done", "what CMD's exit means while leading: stop-when-done, run-again or recampaign")
	var hf holdFlags
	hf.register(f)
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return f.usageError(stderr, "want one NAME, got %d arguments", len(pos))
	}
	policy, ok := map[string]leaderjob.Policy{
		"stop-when-done": leaderjob.StopWhenDone,
		"run-again":      leaderjob.RunAgain,
		"recampaign":     leaderjob.Recampaign,
	}[*policyName]
	if !ok {
		return f.usageError(stderr, "unknown --policy %q", *policyName)
	}
	name := pos[0]
	if err := checkName(name); err != nil {
		return f.usageError(stderr, "%v", err)
	}
	if *id == "" {
		*id = hostID()
	}

	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()

	// The job reports a term lockstep cannot go on from: a CMD that could
	// not start (campaigning again would not help), or the term our own
	// signal ended (CMD's code is then lockstep's; 0 without CMD).
	var (
		mu    sync.Mutex
		final *childResult
	)
	setFinal := func(res childResult) {
		mu.Lock()
		final = &res
		mu.Unlock()
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	job := func(jctx context.Context, t *election.Term) error {
		env := append(ownershipEnv(name, t, t.Session()), "LOCKSTEP_ID="+*id)
		env = append(env, conn.env()...)
		fmt.Fprintf(stderr, "lockstep elect: leader of %s as %q (token %d)\n", name, *id, t.Token())
		if len(cmd) == 0 {
			for _, kv := range env {
				fmt.Fprintln(stdout, kv)
			}
			<-jctx.Done()
			if ctx.Err() != nil {
				setFinal(childResult{code: exitOK}) // a signal ends a lead held without CMD: resign
			} else {
				fmt.Fprintf(stderr, "lockstep elect: leadership of %s lost: %s; campaigning again\n", name, errText(t.Err()))
			}
			return jctx.Err()
		}
		res := child{args: cmd, env: env, stdout: stdout, stderr: stderr, grace: hf.grace}.run(ctx, jctx.Done())
		switch {
		case res.err != nil || ctx.Err() != nil:
			if res.err != nil {
				fmt.Fprintf(stderr, "lockstep elect: %s\n", errText(res.err))
			}
			setFinal(res)
			stop()
			return jctx.Err()
		case res.stopped:
			fmt.Fprintf(stderr, "lockstep elect: leadership of %s lost: %v; CMD stopped (exit code %d); campaigning again\n", name, t.Err(), res.code)
			return jctx.Err()
		case res.code == 0:
			return nil
		default:
			return cmdExited(res.code)
		}
	}
	onBackoff := func(d time.Duration, err error) {
		d = d.Round(time.Millisecond)
		var code cmdExited
		switch {
		case !errors.As(err, &code):
			fmt.Fprintf(stderr, "lockstep elect: %s; campaigning again in %v\n", errText(err), d)
		case policy == leaderjob.RunAgain:
			fmt.Fprintf(stderr, "lockstep elect: CMD exited with %d; still leader, running it again in %v\n", code, d)
		default:
			fmt.Fprintf(stderr, "lockstep elect: CMD exited with %d; resigned, campaigning again in %v\n", code, d)
		}
	}
	onNewLeader := func(l election.Leader) {
		if l.Value != *id {
			fmt.Fprintf(stderr, "lockstep elect: %s is led by %q (token %d)\n", name, l.Value, l.Token)
		}
	}
	r, err := leaderjob.New(cli, name, job,
		leaderjob.WithIdentity(*id),
		leaderjob.WithTTL(conn.ttl),
		leaderjob.WithPolicy(policy),
		leaderjob.WithOnNewLeader(onNewLeader),
		leaderjob.WithOnBackoff(onBackoff))
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}
	err = r.Run(runCtx)
	mu.Lock()
	defer mu.Unlock()
	switch {
	case final != nil:
		return final.code
	case err == nil:
		return exitOK
	default:
		return fail(ctx, stderr, f.name, err)
	}
}

// cmdExited is the job's error when CMD exits with a code other than 0.
type cmdExited int

func (c cmdExited) Error() string { return "CMD exited with " + strconv.Itoa(int(c)) }
