package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/retry"
)

const svcRegisterAbout = `
Registers an instance of SERVICE at ADDR (host:port) and runs CMD; the
instance stays listed while CMD runs. If the registration is lost (its
lease ends, etcd is out of reach past the TTL, the key is deleted), lockstep
registers it again, with backoff and no limit, and says so on stderr each
time; CMD goes on running.

On SIGINT or SIGTERM the instance is marked draining first (lockstep's
resolver sends it no new calls while another instance serves); after
--drain the signal goes to CMD's process group (SIGKILL after --grace), so
that CMD stops once clients have moved away. When CMD exits on its own,
the instance is marked draining and stays listed for --drain. Then it is
deleted, and lockstep exits with CMD's code. A CMD that cannot be started
is deregistered at once (exit 126 or 127). Without CMD, lockstep prints CMD's variables and keeps
the instance registered until SIGINT or SIGTERM, then drains and deletes
it (exit 0).

The key is PREFIX/SERVICE/ID (default prefix ` + svcPrefix + `), under
the registration's own lease, in etcd naming's JSON. If another live
registration holds the same ID, lockstep waits for it to go (--timeout:
exit 75 after that long). A bad SERVICE, ADDR, --id, --weight, --meta or
--prefix is refused before anything is written (exit 2).

CMD gets LOCKSTEP_NAME (SERVICE), LOCKSTEP_ID, LOCKSTEP_ADDR, LOCKSTEP_KEY
and LOCKSTEP_ENDPOINTS.

example:
  lockstep svc register greeter 10.0.0.5:50051 --weight 10 --zone eu-1 --meta az=b -- ./greeter --listen :50051
`

func runSvcRegister(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("svc register", "[flags] SERVICE ADDR [-- CMD [ARG...]]", svcRegisterAbout)
	var conn connFlags
	conn.registerSession(f)
	id := f.String("id", "", "the instance's ID, unique within SERVICE (default host-pid)")
	weight := f.Int("weight", 1, "the instance's share of calls under lockstep's weighted round-robin; not negative")
	zone := f.String("zone", "", "the instance's zone, for zone-preferring clients")
	version := f.String("version", "", "the instance's version")
	meta := metaFlag{}
	f.Var(meta, "meta", "metadata `key=value`; repeat the flag for more keys")
	drain := f.Duration("drain", discovery.DefaultGrace, "how long the instance is listed as draining before CMD gets a signal, or before it is deleted once CMD exited")
	grace := f.Duration("grace", 5*time.Second, "after SIGTERM, wait this long for CMD to exit before SIGKILL")
	var wait waitFlags
	wait.register(f, "registering (another live registration holds the ID)")
	prefix := svcPrefixFlag(f)
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 2 {
		return f.usageError(stderr, "want SERVICE and ADDR, got %d arguments", len(pos))
	}
	if cmd != nil && len(cmd) == 0 {
		return f.usageError(stderr, "nothing to run after --")
	}
	if *id == "" {
		*id = hostID()
	}
	in := discovery.Instance{Service: pos[0], ID: *id, Addr: pos[1], Weight: *weight, Zone: *zone, Version: *version}
	if len(meta) > 0 {
		in.Metadata = meta
	}
	name := in.Service + "/" + in.ID
	if err := in.Validate(); err != nil { // before waiting for etcd
		return f.usageError(stderr, "%v", err)
	}

	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	// Called from the registration's goroutine at each change, the first
	// registration included: the operator sees every loss and every return.
	onChange := func(e discovery.Event) {
		if e.Registered {
			fmt.Fprintf(stderr, "lockstep svc register: %s registered at %s (lease %x)\n", name, in.Addr, int64(e.Lease))
		} else {
			fmt.Fprintf(stderr, "lockstep svc register: %s registration lost: %s; registering again\n", name, errText(e.Err))
		}
	}
	rctx, cancel := wait.context(ctx)
	reg, err := discovery.Register(rctx, cli, *prefix, in,
		discovery.WithTTL(conn.ttl), discovery.WithGrace(*drain), discovery.WithOnChange(onChange))
	cancel()
	switch {
	case svcInputError(err):
		return f.usageError(stderr, "%v", err)
	case wait.timedOut(ctx, err):
		fmt.Fprintf(stderr, "lockstep svc register: %s not registered after %v: %s\n", name, wait.timeout, errText(err))
		return exitBusy
	case err != nil:
		return fail(ctx, stderr, f.name, err)
	}

	env := append([]string{
		"LOCKSTEP_NAME=" + in.Service,
		"LOCKSTEP_ID=" + in.ID,
		"LOCKSTEP_ADDR=" + in.Addr,
		"LOCKSTEP_KEY=" + reg.Key(),
	}, conn.env()...)
	if len(cmd) == 0 {
		for _, kv := range env {
			fmt.Fprintln(stdout, kv)
		}
		<-ctx.Done()
		deregister(ctx, reg, name, stderr)
		return exitOK
	}
	// The registration repairs itself after a loss, so nothing stops CMD
	// but its own end or a signal, which drains the instance first.
	childCtx, stopDrain := drainThenSignal(ctx, reg, *drain)
	res := child{args: cmd, env: env, stdout: stdout, stderr: stderr, grace: *grace}.run(childCtx, nil)
	if stopDrain() {
		deregisterNow(reg, name, stderr) // drained and waited already
		return res.code
	}
	if res.err != nil {
		fmt.Fprintf(stderr, "lockstep svc register: %s\n", errText(res.err))
		// Nothing ever served at ADDR: no drain, no grace.
		deregisterNow(reg, name, stderr)
		return res.code
	}
	deregister(ctx, reg, name, stderr)
	return res.code
}

// drainThenSignal returns the context CMD is run with: it ends with ctx's
// signal once the instance has been marked draining and --drain has
// passed. stop ends the wait (CMD exited first) and reports whether the
// drain was started, which leaves only the delete to do.
func drainThenSignal(ctx context.Context, reg *discovery.Registration, drain time.Duration) (childCtx context.Context, stop func() bool) {
	childCtx, signal := context.WithCancelCause(context.Background())
	cmdDone := make(chan struct{})
	var started atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	stopAfter := context.AfterFunc(ctx, func() {
		defer wg.Done()
		started.Store(true)
		dctx, cancel := context.WithTimeout(context.Background(), drain+retry.AttemptTimeout)
		reg.Drain(dctx)
		cancel()
		t := time.NewTimer(drain)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cmdDone:
		}
		signal(context.Cause(ctx))
	})
	return childCtx, func() bool {
		close(cmdDone)
		if stopAfter() {
			wg.Done() // the drain never started
		}
		wg.Wait()
		signal(nil)
		return started.Load()
	}
}

// deregisterNow deletes the instance at once: Close with an ended context
// skips the drain and revokes the lease.
func deregisterNow(reg *discovery.Registration, name string, stderr io.Writer) {
	now, cancel := context.WithCancel(context.Background())
	cancel()
	reg.Close(now)
	fmt.Fprintf(stderr, "lockstep svc register: %s deregistered\n", name)
}

// deregister drains the instance, waits the grace period and deletes it.
// If no signal has come yet, the first one during the grace period cuts it
// short: the key is deleted at once. After one (forwarded to CMD, or the
// one that ended a registration without CMD) the grace period is kept; a
// second signal kills the process (see notifyContext).
func deregister(ctx context.Context, reg *discovery.Registration, name string, stderr io.Writer) {
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	if err := reg.Close(ctx); err != nil {
		fmt.Fprintf(stderr, "lockstep svc register: %s deregistered without the full drain: %s\n", name, errText(err))
		return
	}
	fmt.Fprintf(stderr, "lockstep svc register: %s deregistered\n", name)
}

// metaFlag is --meta key=value, repeated.
type metaFlag map[string]string

func (m metaFlag) String() string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ",")
}

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value with a non-empty key")
	}
	if _, dup := m[k]; dup {
		return fmt.Errorf("key %q given twice", k)
	}
	m[k] = v
	return nil
}
