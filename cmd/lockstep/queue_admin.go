package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/lockstep-go/lockstep/queue"
)

func runQueueList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue list", "[flags] NAME", `
Prints the items of the queue NAME in the order they are served, one line
each under a header: ID, PRIORITY, ATTEMPTS (deliveries so far, the one in
progress included), CLAIM (the lease of the consumer that holds the item,
hex, or "-") and VALUE (quoted, cut at 60 bytes).

With --json it prints one JSON array instead, an object per item:
{"id","value","priority","attempts","claimed","claim_lease","claim_revision",
"revision"}; value is whole, claim_lease a hex string ("0" for none), so
that no JSON reader rounds it.

example:
  lockstep queue list /queue/jobs --limit 20
`)
	var conn connFlags
	conn.register(f)
	limit := f.Int("limit", 0, "list at most this many items (0: all)")
	asJSON := f.Bool("json", false, "print a JSON array")
	p, _, done, code, ok := parseAdmin(ctx, f, &conn, args, false, stdout, stderr)
	if !ok {
		return code
	}
	defer done()
	items, err := p.List(ctx, *limit)
	if errors.Is(err, queue.ErrInvalidOption) {
		return f.usageError(stderr, "--limit %d: must not be negative", *limit)
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	if err := printItems(stdout, items, *asJSON); err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}

func runQueuePeek(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue peek", "[flags] NAME", `
Prints the item the next 'queue pop' would receive, as 'queue list' prints
an item, without claiming it. Exits 75 if no item is waiting (the queue is
empty, or consumers hold every item).
`)
	var conn connFlags
	conn.register(f)
	asJSON := f.Bool("json", false, "print a JSON array of one item")
	p, _, done, code, ok := parseAdmin(ctx, f, &conn, args, false, stdout, stderr)
	if !ok {
		return code
	}
	defer done()
	it, err := p.Peek(ctx)
	if errors.Is(err, queue.ErrNotFound) {
		fmt.Fprintf(stderr, "lockstep %s: %s\n", f.name, errText(err))
		return exitBusy
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	if err := printItems(stdout, []queue.Info{it}, *asJSON); err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}

func runQueueRm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue rm", "[flags] NAME ID", `
Removes the item ID from the queue NAME, with its claim if a consumer holds
it: that consumer's ack will fail, and 'queue pop -- CMD' stops CMD and
exits 76. Exits 1 if there is no such item.
`)
	var conn connFlags
	conn.register(f)
	p, pos, done, code, ok := parseAdmin(ctx, f, &conn, args, true, stdout, stderr)
	if !ok {
		return code
	}
	defer done()
	err := p.Remove(ctx, pos[1])
	if errors.Is(err, queue.ErrInvalidID) {
		return f.usageError(stderr, "%v", err)
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	return exitOK
}

func runQueuePurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue purge", "--yes [flags] NAME", `
Removes every item of the queue NAME, and every claim, in one transaction,
and prints how many items it removed. Consumers holding items lose them as
with 'queue rm'. --yes is required.
`)
	var conn connFlags
	conn.register(f)
	yes := f.Bool("yes", false, "yes, remove every item")
	p, _, done, code, ok := parseAdmin(ctx, f, &conn, args, false, stdout, stderr)
	if !ok {
		return code
	}
	defer done()
	if !*yes {
		return f.usageError(stderr, "purge removes every item: add --yes")
	}
	n, err := p.Purge(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, n)
	return exitOK
}

func runQueueMove(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("queue move", "--to QUEUE [flags] NAME ID", `
Moves the item ID from the queue NAME to the end of its priority in QUEUE,
in one transaction, and prints its new ID. Its value and priority stay;
its attempts start again from zero. This is how a dead letter goes back to
work: move it from the dead-letter queue to the queue it came from. Exits
1 if there is no such item, or if a consumer holds it.

example:
  lockstep queue list /queue/jobs-dead
  lockstep queue move /queue/jobs-dead 7ffffffb/18d3c1... --to /queue/jobs
`)
	var conn connFlags
	conn.register(f)
	to := f.String("to", "", "the queue to move the item to (required)")
	p, pos, done, code, ok := parseAdmin(ctx, f, &conn, args, true, stdout, stderr)
	if !ok {
		return code
	}
	defer done()
	if *to == "" {
		return f.usageError(stderr, "--to QUEUE is required")
	}
	dst, err := queue.NewProducer(p.Client(), *to)
	if err != nil {
		return f.usageError(stderr, "--to: %v", err)
	}
	id, err := p.Move(ctx, pos[1], dst)
	if errors.Is(err, queue.ErrInvalidID) || errors.Is(err, queue.ErrInvalidOption) {
		return f.usageError(stderr, "%v", err)
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, id)
	return exitOK
}

// parseAdmin parses args, which must hold the queue's name and, with id,
// an item's ID, and opens a producer of that queue.
func parseAdmin(ctx context.Context, f *cmdFlags, conn *connFlags, args []string, id bool, stdout, stderr io.Writer) (p *queue.Producer, pos []string, done func(), code int, ok bool) {
	pos, _, code, ok = f.parse(args, stdout, stderr)
	if !ok {
		return nil, nil, nil, code, false
	}
	switch {
	case id && len(pos) != 2:
		return nil, nil, nil, f.usageError(stderr, "want NAME and ID, got %d arguments", len(pos)), false
	case !id && len(pos) != 1:
		return nil, nil, nil, f.usageError(stderr, "want one NAME, got %d arguments", len(pos)), false
	}
	p, done, code, ok = openProducer(ctx, f, conn, pos[0], stderr)
	return p, pos, done, code, ok
}

// queueItemJSON is an item as --json prints it: field names of its own, so
// that the output does not change with the Go type's.
type queueItemJSON struct {
	ID            string `json:"id"`
	Value         string `json:"value"`
	Priority      int    `json:"priority"`
	Attempts      int    `json:"attempts"`
	Claimed       bool   `json:"claimed"`
	ClaimLease    string `json:"claim_lease"` // hex: a JSON number would lose digits in most readers
	ClaimRevision int64  `json:"claim_revision"`
	Revision      int64  `json:"revision"`
}

// printItems prints items as a table, or as one line of JSON.
func printItems(w io.Writer, items []queue.Info, asJSON bool) error {
	if asJSON {
		out := make([]queueItemJSON, 0, len(items))
		for _, it := range items {
			out = append(out, queueItemJSON{
				ID: it.ID, Value: it.Value, Priority: it.Priority, Attempts: it.Attempts,
				Claimed: it.Claimed, ClaimLease: fmt.Sprintf("%x", it.ClaimLease),
				ClaimRevision: it.ClaimRevision, Revision: it.Revision,
			})
		}
		return printJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPRIORITY\tATTEMPTS\tCLAIM\tVALUE")
	for _, it := range items {
		claim := "-"
		if it.Claimed {
			claim = fmt.Sprintf("%x", it.ClaimLease)
		}
		v := it.Value
		if len(v) > 60 {
			v = v[:60] + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%q\n", it.ID, it.Priority, it.Attempts, claim, v)
	}
	return tw.Flush()
}
