package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/lockstep-go/lockstep"
	names "github.com/lockstep-go/lockstep/internal/keys"
)

// cmdFlags is one command's flag set and help text. Flags may come before,
// between and after the positional arguments, up to a "--" that starts the
// command to run (CMD), as in `lockstep sem NAME --limit 3 -- CMD`.
type cmdFlags struct {
	*flag.FlagSet
	name     string // "lock", "barrier wait"
	synopsis string // what follows "lockstep <name>" in the usage line
	about    string // paragraphs printed under the usage line
}

func newFlags(name, synopsis, about string) *cmdFlags {
	fs := flag.NewFlagSet("lockstep "+name, flag.ContinueOnError)
	f := &cmdFlags{FlagSet: fs, name: name, synopsis: synopsis, about: about}
	fs.Usage = func() {} // errors say where to find help; --help prints it to stdout
	return f
}

// help prints the command's usage: synopsis, text, flags.
func (f *cmdFlags) help(w io.Writer) {
	fmt.Fprintf(w, "usage: lockstep %s %s\n\n%s\n", f.name, f.synopsis, strings.TrimSpace(f.about))
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		f.SetOutput(w)
		f.PrintDefaults()
	}
}

// parse parses args. It returns the positional arguments, the command after
// "--" (nil if there is none), and ok; when ok is false the caller exits
// with code (0 after --help, exitUsage after an error, already reported).
func (f *cmdFlags) parse(args []string, stdout, stderr io.Writer) (pos, cmd []string, code int, ok bool) {
	if i := indexOf(args, "--"); i >= 0 {
		args, cmd = args[:i], args[i+1:]
		if cmd == nil {
			cmd = []string{}
		}
	}
	f.SetOutput(io.Discard) // its errors are printed below, with the command's name
	for {
		err := f.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.help(stdout)
			return nil, nil, exitOK, false
		}
		if err == nil && f.NArg() == 0 {
			err = f.checkDurations()
		}
		if err != nil {
			fmt.Fprintf(stderr, "lockstep %s: %v\nrun 'lockstep %s --help' for usage\n", f.name, err, f.name)
			return nil, nil, exitUsage, false
		}
		if f.NArg() == 0 {
			return pos, cmd, 0, true
		}
		pos = append(pos, f.Arg(0))
		args = f.Args()[1:]
	}
}

// checkDurations refuses a negative duration in any flag: no wait, TTL or
// grace period can be negative, and none means "forever". A zero
// --dial-timeout would give up before the first dial.
func (f *cmdFlags) checkDurations() error {
	var err error
	f.Visit(func(fl *flag.Flag) {
		g, ok := fl.Value.(flag.Getter)
		if !ok || err != nil {
			return
		}
		switch d, ok := g.Get().(time.Duration); {
		case !ok:
		case d < 0:
			err = fmt.Errorf("--%s %v: must not be negative", fl.Name, d)
		case d == 0 && fl.Name == "dial-timeout":
			err = fmt.Errorf("--%s %v: must be positive", fl.Name, d)
		case fl.Name == "ttl":
			if e := lockstep.CheckTTL(d); e != nil {
				err = fmt.Errorf("--ttl %v: %s", d, errText(e))
			}
		}
	})
	return err
}

// usageError reports a bad invocation and returns exitUsage.
func (f *cmdFlags) usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "lockstep %s: %s\nusage: lockstep %s %s\n", f.name, cleanPrefixes(fmt.Sprintf(format, args...)), f.name, f.synopsis)
	return exitUsage
}

// pkgPrefix is the package name that lockstep's errors start with, at the
// start of a message or of a part wrapped in it.
var pkgPrefix = regexp.MustCompile(`(^|: )(?:lockstep|leaderjob|mutex|semaphore|election|barrier|queue|config|cache|discovery): `)

// cleanPrefixes drops the package names from an error's text: the command
// prints one prefix, its own ("lockstep lock: invalid session ttl", not
// "lockstep lock: lockstep: invalid session ttl").
func cleanPrefixes(msg string) string {
	for {
		next := pkgPrefix.ReplaceAllString(msg, "$1")
		if next == msg {
			return msg
		}
		msg = next
	}
}

// errText is err's text as a command prints it, after its own prefix.
func errText(err error) string { return cleanPrefixes(err.Error()) }

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// waitFlags is --timeout, for commands that wait.
type waitFlags struct{ timeout time.Duration }

func (w *waitFlags) register(f *cmdFlags, what string) {
	f.DurationVar(&w.timeout, "timeout", 0, "give up "+what+" after this long and exit 75 (0: wait as long as it takes)")
}

// context bounds ctx by the timeout, if there is one.
func (w *waitFlags) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.timeout > 0 {
		return context.WithTimeout(ctx, w.timeout)
	}
	return context.WithCancel(ctx)
}

// timedOut reports whether err is the timeout's doing rather than a signal's.
func (w *waitFlags) timedOut(ctx context.Context, err error) bool {
	return w.timeout > 0 && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
}

// fail reports a command's error and returns its exit code: 128+N if
// signal N interrupted it, exitError otherwise.
func fail(ctx context.Context, stderr io.Writer, name string, err error) int {
	if sig, ok := signalOf(ctx); ok {
		fmt.Fprintf(stderr, "lockstep %s: interrupted by %s\n", name, signalName(sig))
		return 128 + int(sig)
	}
	msg := errText(err)
	if errors.Is(err, rpctypes.ErrUserEmpty) {
		msg += " (this etcd wants a login: --user NAME[:PASSWORD], or LOCKSTEP_USER or ETCDCTL_USER)"
	}
	fmt.Fprintf(stderr, "lockstep %s: %s\n", name, msg)
	if errors.Is(err, lockstep.ErrInvalidTTL) {
		return exitUsage
	}
	return exitError
}

// hostID is what a process is called when it does not say: host-pid, as
// leaderjob's default identity.
func hostID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "host"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// printJSON writes v as one line of JSON: what every --json prints.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// checkName refuses a NAME that no recipe takes, before anything connects.
func checkName(name string) error { return names.CheckPrefix(name) }
