package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/queue"
)

var queueCommands = []command{
	{"push", "add VALUE to the queue NAME and print its ID", runQueuePush},
	{"pop", "take the most urgent item: print it, or give it to CMD", runQueuePop},
	{"len", "print how many items the queue NAME holds", runQueueLen},
	{"list", "print the items in the order they are served, with their claims", runQueueList},
	{"peek", "print the item the next pop would receive, without claiming it", runQueuePeek},
	{"rm", "remove one item, by ID", runQueueRm},
	{"purge", "remove every item", runQueuePurge},
	{"move", "move one item to another queue: a dead letter back to work", runQueueMove},
}

func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "queue", `
A durable priority work queue: items stay in etcd until a consumer acks
them; lower --priority values are served first, first in first out within
a priority. A consumer that dies before its ack gives the item back, and
it is delivered again with LOCKSTEP_ATTEMPTS one higher.
`, queueCommands, args, stdout, stderr)
}

// maxEnvValue is the largest value pop also passes in LOCKSTEP_VALUE:
// Linux refuses to start a process with a longer variable.
const maxEnvValue = 64 << 10

func runQueuePush(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue push", "[flags] NAME VALUE", `
Adds VALUE to the queue NAME and prints the item's ID. VALUE "-" reads the
value from stdin. The item is durable: it stays until a consumer acks it.

example:
  lockstep queue push /queue/jobs "resize img-42" --priority -5
`)
	var conn connFlags
	conn.register(f)
	prio := f.Int("priority", 0, "lower values are served first; negative values allowed")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	pos = append(pos, cmd...) // "--" lets a VALUE start with "-"
	if len(pos) != 2 {
		return f.usageError(stderr, "want NAME and VALUE, got %d arguments", len(pos))
	}
	name, value := pos[0], pos[1]
	if value == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fail(ctx, stderr, f.name, fmt.Errorf("read stdin: %w", err))
		}
		value = string(b)
	}
	p, done, code, ok := openProducer(ctx, f, &conn, name, stderr)
	if !ok {
		return code
	}
	defer done()
	id, err := p.Enqueue(ctx, value, queue.WithPriority(*prio))
	if errors.Is(err, queue.ErrInvalidPriority) || errors.Is(err, queue.ErrTooLarge) {
		return f.usageError(stderr, "%v", err)
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, id)
	return exitOK
}

func runQueueLen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue len", "[flags] NAME", `
Prints the number of items in the queue NAME that have not been acked,
whether a consumer is working on them or not.
`)
	var conn connFlags
	conn.register(f)
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return f.usageError(stderr, "want one NAME, got %d arguments", len(pos))
	}
	p, done, code, ok := openProducer(ctx, f, &conn, pos[0], stderr)
	if !ok {
		return code
	}
	defer done()
	n, err := p.Len(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, n)
	return exitOK
}

func runQueuePop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue pop", "[flags] NAME [-- CMD [ARG...]]", `
Waits for the most urgent item of the queue NAME and claims it.

With CMD, delivery is at least once: the item is acked only when CMD has
done its work. Without CMD, lockstep cannot know when the work is done, so
pop then needs --ack: it prints the value and a newline and acks the item
at once (exit 0). That is at most once: an item whose reader dies after
the print is lost. If the value cannot be written the item is given back
(nack).

With CMD, the value is CMD's stdin, and CMD gets LOCKSTEP_VALUE (values up
to 64 KiB), LOCKSTEP_ITEM_ID (the same on every delivery: use it to make
the work idempotent), LOCKSTEP_ATTEMPTS (1 on the first delivery),
LOCKSTEP_PRIORITY, LOCKSTEP_KEY and LOCKSTEP_TOKEN (the claim's), and
LOCKSTEP_NAME. The item is acked if CMD exits 0 and given back for another
delivery otherwise; lockstep exits with CMD's code. If the claim is lost
while CMD runs (the session cannot renew its lease), CMD is stopped
(SIGTERM, SIGKILL after --grace), the item will be delivered again, and
lockstep exits 76.

examples:
  lockstep queue pop --ack /queue/jobs
  while lockstep queue pop /queue/jobs --timeout 10s -- sh -c './work "$LOCKSTEP_VALUE"'; do :; done
`)
	var conn connFlags
	conn.registerSession(f)
	var wait waitFlags
	wait.register(f, "waiting for an item")
	var hf holdFlags
	hf.register(f)
	deadLetter := f.String("dead-letter", "", "move an item delivered --max-attempts times without ack to this queue")
	maxAttempts := f.Int("max-attempts", 5, "deliveries before an item goes to --dead-letter")
	ack := f.Bool("ack", false, "without CMD: print the item and ack it at once (at most once)")
	asJSON := f.Bool("json", false, "with --ack: print the item as a JSON object {\"id\",\"value\",\"priority\",\"attempts\"}")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return f.usageError(stderr, "want one NAME, got %d arguments", len(pos))
	}
	if cmd != nil && len(cmd) == 0 {
		return f.usageError(stderr, "nothing to run after --")
	}
	switch {
	case cmd == nil && !*ack:
		return f.usageError(stderr, "without CMD the item is acked as soon as it is printed, and lost if its reader dies: give a CMD (acked when it exits 0), or --ack to accept that")
	case cmd != nil && (*ack || *asJSON):
		return f.usageError(stderr, "--ack and --json are for pop without CMD; with CMD the item is acked when CMD exits 0")
	}
	name := pos[0]
	var opts []queue.Option
	if *deadLetter != "" {
		opts = append(opts, queue.WithDeadLetter(*deadLetter, *maxAttempts))
	}
	q, done, code, ok := openQueue(ctx, f, &conn, name, stderr, opts...)
	if !ok {
		return code
	}
	defer done()

	wctx, cancel := wait.context(ctx)
	it, err := q.Dequeue(wctx)
	cancel()
	if wait.timedOut(ctx, err) {
		fmt.Fprintf(stderr, "lockstep queue pop: %s: no item after %v\n", name, wait.timeout)
		return exitBusy
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}

	if cmd == nil {
		var err error
		if *asJSON {
			err = printJSON(stdout, poppedJSON{ID: it.ID(), Value: it.Value(), Priority: it.Priority(), Attempts: it.Attempts()})
		} else {
			_, err = fmt.Fprintln(stdout, it.Value())
		}
		if err != nil {
			finish(it.Nack, f.name, stderr)
			return fail(ctx, stderr, f.name, fmt.Errorf("write the item: %w; given back", err))
		}
		return ackCode(finish(it.Ack, f.name, stderr))
	}

	env := append(ownershipEnv(name, it, it.Session()),
		"LOCKSTEP_ITEM_ID="+it.ID(),
		"LOCKSTEP_ATTEMPTS="+strconv.Itoa(it.Attempts()),
		"LOCKSTEP_PRIORITY="+strconv.Itoa(it.Priority()))
	if len(it.Value()) <= maxEnvValue {
		env = append(env, "LOCKSTEP_VALUE="+it.Value())
	}
	env = append(env, conn.env()...)
	res := child{args: cmd, env: env, stdin: strings.NewReader(it.Value()), stdout: stdout, stderr: stderr, grace: hf.grace}.run(ctx, it.Done())
	if res.err != nil {
		fmt.Fprintf(stderr, "lockstep queue pop: %s\n", errText(res.err))
	}
	if res.stopped {
		fmt.Fprintf(stderr, "lockstep queue pop: claim lost while CMD ran: %v (CMD exit code %d); the item will be delivered again\n", it.Err(), res.code)
		return exitLost
	}
	if res.code != 0 {
		finish(it.Nack, f.name, stderr)
		return res.code
	}
	return ackCode(finish(it.Ack, f.name, stderr))
}

// poppedJSON is an item as pop --json prints it.
type poppedJSON struct {
	ID       string `json:"id"`
	Value    string `json:"value"`
	Priority int    `json:"priority"`
	Attempts int    `json:"attempts"`
}

// ackCode is the exit code after an Ack: a lost claim means the item will
// be delivered again, as when the claim is lost while CMD runs.
func ackCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, queue.ErrClaimLost):
		return exitLost
	default:
		return exitError
	}
}

// openQueue connects, opens a session and the queue NAME. done closes them.
func openQueue(ctx context.Context, f *cmdFlags, conn *connFlags, name string, stderr io.Writer, opts ...queue.Option) (q *queue.Queue, done func(), code int, ok bool) {
	if err := checkName(name); err != nil {
		return nil, nil, f.usageError(stderr, "%v", err), false
	}
	cli, s, err := conn.session(ctx)
	if err != nil {
		return nil, nil, fail(ctx, stderr, f.name, err), false
	}
	done = func() {
		s.Close()
		cli.Close()
	}
	q, err = queue.New(s, name, opts...)
	if err != nil {
		done()
		return nil, nil, f.usageError(stderr, "%v", err), false
	}
	return q, done, 0, true
}

// openProducer connects and opens a producer of the queue NAME: no
// session, no lease. done closes the client.
func openProducer(ctx context.Context, f *cmdFlags, conn *connFlags, name string, stderr io.Writer) (p *queue.Producer, done func(), code int, ok bool) {
	if err := checkName(name); err != nil {
		return nil, nil, f.usageError(stderr, "%v", err), false
	}
	cli, err := conn.client(ctx)
	if err != nil {
		return nil, nil, fail(ctx, stderr, f.name, err), false
	}
	p, err = queue.NewProducer(cli, name)
	if err != nil {
		cli.Close()
		return nil, nil, f.usageError(stderr, "%v", err), false
	}
	return p, func() { cli.Close() }, 0, true
}

// finish acks or nacks under its own timeout, so that a signal does not
// leave the item claimed until the lease expires; an error is reported.
func finish(op func(context.Context) error, name string, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
	defer cancel()
	err := op(ctx)
	if errors.Is(err, queue.ErrClaimLost) {
		fmt.Fprintf(stderr, "lockstep %s: %s; the item will be delivered again\n", name, errText(err))
	} else if err != nil {
		fmt.Fprintf(stderr, "lockstep %s: %s\n", name, errText(err))
	}
	return err
}
