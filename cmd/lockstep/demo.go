package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
)

// demoTTL is every demo session's lease TTL: the smallest etcd allows, so
// that a crash is over in two seconds.
const demoTTL = 2 * time.Second

const demoAbout = `
Starts an etcd inside this process and tells four short stories, one per
recipe, with simulated workers: an index builder that fails over when its
leader dies, a job lock whose fencing token stops a stale writer, batch
workers in lockstep, and a work queue that loses nothing when a consumer
crashes. Takes a few seconds; needs no setup and leaves nothing behind.
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("demo", "", demoAbout)
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return f.usageError(stderr, "takes no arguments")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// No server logs: the demo revokes leases behind its sessions' backs,
	// and etcd warns when a session then revokes its own. A server that
	// fails says so through Start's error.
	srv, err := embedded.Start(ctx, embedded.WithoutFsync(), embedded.WithLogger(zap.NewNop()))
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}

	n := &narrator{w: stdout}
	fmt.Fprintf(stdout, "lockstep demo: etcd runs inside this process on %s.\n", srv.Endpoints()[0])
	fmt.Fprintf(stdout, "Every simulated worker has its own session with a %v TTL: what it holds is\n", demoTTL)
	fmt.Fprintln(stdout, "released at most that long after it dies. Times are from the start of each story.")
	d := demo{cli: cli, n: n, endpoint: srv.Endpoints()[0]}
	for _, story := range []func(context.Context) error{d.election, d.fencing, d.batches, d.queue} {
		if err := story(ctx); err != nil {
			return fail(ctx, stderr, f.name, err)
		}
	}
	fmt.Fprint(stdout, `
That was lockstep. Next:
  go doc github.com/lockstep-go/lockstep        the ownership contract
  docs/*.md                                     one guide per recipe
  go run ./examples/indexbuilder                the examples (also joblock, batchworkers, workqueue)
  go run ./cmd/lockstep serve                   an etcd to try the CLI against; then, in another shell:
  go run ./cmd/lockstep lock /locks/x -- sh -c 'echo "I hold it, token $LOCKSTEP_TOKEN"'
`)
	return exitOK
}

// demo is what the stories share.
type demo struct {
	cli      *clientv3.Client
	n        *narrator
	endpoint string
}

// session opens a demo session on cli; close it when done.
func (d *demo) session(ctx context.Context, cli *clientv3.Client) (*lockstep.Session, error) {
	return lockstep.NewSession(ctx, cli, lockstep.WithTTL(demoTTL))
}

// waitKeys waits until n keys exist under prefix+"/": that many candidates
// or waiters are in line. Each look is one read; the demo is small.
func (d *demo) waitKeys(ctx context.Context, prefix string, n int64) error {
	for {
		resp, err := d.cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// narrator prints the stories. Only the demo's own goroutine calls it;
// workers report to that goroutine over channels, so lines never
// interleave and come out in a fixed order.
type narrator struct {
	w     io.Writer
	t0    time.Time
	timed bool
}

// story starts a story and its clock. An untimed story's lines are
// bullets: its steps follow each other within milliseconds.
func (n *narrator) story(title, intro string, timed bool) {
	fmt.Fprintf(n.w, "\n%s\n%s\n", title, strings.Repeat("─", len([]rune(title))))
	for _, line := range strings.Split(strings.TrimSpace(intro), "\n") {
		fmt.Fprintf(n.w, "  %s\n", line)
	}
	fmt.Fprintln(n.w)
	n.t0, n.timed = time.Now(), timed
}

// at says what happened at t.
func (n *narrator) at(t time.Time, format string, args ...any) {
	when := "-"
	if n.timed {
		when = n.since(t)
	}
	fmt.Fprintf(n.w, "  %6s  %s\n", when, fmt.Sprintf(format, args...))
}

// say adds a line without a time.
func (n *narrator) say(format string, args ...any) {
	fmt.Fprintf(n.w, "  %6s  %s\n", "", fmt.Sprintf(format, args...))
}

func (n *narrator) since(t time.Time) string {
	return fmt.Sprintf("%.2fs", t.Sub(n.t0).Seconds())
}

// ms formats a duration for the narration.
func ms(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
