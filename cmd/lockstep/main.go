// Command lockstep runs lockstep's coordination recipes from a shell, and
// an embedded etcd to run them against.
//
//	lockstep demo                          see every recipe at work (no setup)
//	lockstep lock NAME -- CMD [ARG...]     run CMD while holding lock NAME
//	lockstep <command> --help              how to use a command
//
// docs/cli.md describes every command, its flags, exit codes and signals.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands in the order lockstep --help lists them.
var commands = []command{
	{"lock", "run a command while holding a lock (etcdctl lock compatible)", runLock},
	{"elect", "run a command only while leader of an election; campaign again on loss", runElect},
	{"sem", "run a command while holding one of N permits", runSem},
	{"barrier", "hold, release and wait at a gate; line up N processes, round after round", runBarrier},
	{"queue", "push to, pop from and count a durable priority work queue", runQueue},
	{"config", "read, write, watch, and roll back configuration kept in etcd", runConfig},
	{"svc", "register a service instance while CMD runs; list and watch a service's instances", runSvc},
	{"status", "show who holds, leads and waits, and how deep the queues are", runStatus},
	{"serve", "run an embedded etcd member in the foreground", runServe},
	{"demo", "watch every recipe at work against an embedded etcd, in a few seconds", runDemo},
	{"version", "print lockstep's version and what it was built with", runVersion},
}

// Exit codes. Codes a command chose (CMD's own) are passed through
// unchanged; lockstep's own codes stay out of the ranges commands commonly
// use, except 1 and 2, which only lockstep returns before CMD has started.
const (
	exitOK    = 0
	exitError = 1  // lockstep failed (etcd unreachable, session lost while waiting, ...)
	exitUsage = 2  // bad flags or arguments
	exitBusy  = 75 // --try found it taken, or --timeout expired (EX_TEMPFAIL)
	exitLost  = 76 // ownership was lost while CMD ran; CMD was stopped
	exitNoRun = 126
	exitNoCmd = 127
)

const exitCodesHelp = `exit codes:
  0      success
  1      lockstep failed before CMD started (etcd unreachable, session lost while waiting, ...)
  2      bad flags or arguments
  75     busy: --try found the lock, permits or gate taken, --timeout expired,
         or config put --if-revision / rollback found it written meanwhile
  76     lost: the lock, permit, claim or session ended while CMD ran; CMD was
         sent SIGTERM, then SIGKILL after --grace
  126    CMD could not be run; 127: CMD not found
  128+N  lockstep was stopped by signal N before CMD started (130 SIGINT, 143 SIGTERM)
  other  once CMD has run, its exit code is lockstep's (128+N if signal N killed it)
`

const envHelp = `environment:
  LOCKSTEP_ENDPOINTS  etcd client URLs, comma-separated, when --endpoints is not given
                      (default ` + defaultEndpoints + `)
  CMD gets LOCKSTEP_KEY, LOCKSTEP_TOKEN (fencing token), LOCKSTEP_NAME, LOCKSTEP_LEASE,
  LOCKSTEP_ENDPOINTS, and per command a few more (see the command's --help)
`

const signalsHelp = `signals:
  SIGINT and SIGTERM are forwarded to CMD (to its process group), which is
  killed after --grace if it has not exited; lockstep then releases what it
  holds and exits with CMD's code. When CMD exits, what is left of its group
  is killed. A second signal kills CMD's group and lockstep at once.
`

func main() {
	ctx, stop := notifyContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "lockstep: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lockstep <command> [flags] [args] [-- CMD [ARG...]]")
	fmt.Fprintln(w, "\nDistributed coordination recipes over etcd, from a shell.")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'lockstep <command> --help' for a command's flags; docs/cli.md has it all.")
	fmt.Fprint(w, "\n"+envHelp+"\n"+exitCodesHelp+"\n"+signalsHelp)
}

// signalled is the cause of the context main cancels on SIGINT or SIGTERM:
// commands forward that signal and exit with 128 plus its number.
type signalled struct{ sig syscall.Signal }

func (s signalled) Error() string { return "received " + signalName(s.sig) }

// notifyContext returns a context cancelled, with a signalled cause, on the
// first SIGINT or SIGTERM. A second one kills every command lockstep runs,
// with its process group, and then lockstep itself, the default way: the
// way out when a command will not stop, which leaves nothing running.
func notifyContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for first := true; ; first = false {
			var sig os.Signal
			select {
			case sig = <-ch:
			case <-done:
				return
			}
			s, _ := sig.(syscall.Signal)
			if first {
				cancel(signalled{s})
				continue
			}
			running.killAll()
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			syscall.Kill(os.Getpid(), s)
			return
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// signalName is a signal's name as a shell user knows it: SIGTERM, not
// "terminated".
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// signalOf returns the signal that cancelled ctx, if one did.
func signalOf(ctx context.Context) (syscall.Signal, bool) {
	s, ok := context.Cause(ctx).(signalled)
	return s.sig, ok
}
