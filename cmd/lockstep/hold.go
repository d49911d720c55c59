package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/retry"
)

// holdFlags is --grace, for commands that run CMD while holding something.
type holdFlags struct{ grace time.Duration }

func (h *holdFlags) register(f *cmdFlags) {
	f.DurationVar(&h.grace, "grace", 5*time.Second, "after SIGTERM, wait this long for CMD to exit before SIGKILL")
}

// holding is something held for CMD: a lock or a permit.
type holding struct {
	cmd     string // the command's name, for messages: "lock"
	what    string // what is held, for messages: "lock /locks/report"
	own     lockstep.Ownership
	release func(context.Context) error
	env     []string // for CMD and for the no-CMD printout
}

// ownershipEnv is what CMD learns of what it runs under.
func ownershipEnv(name string, o lockstep.Ownership, s *lockstep.Session) []string {
	return []string{
		"LOCKSTEP_NAME=" + name,
		"LOCKSTEP_KEY=" + o.Key(),
		"LOCKSTEP_TOKEN=" + strconv.FormatInt(o.Token(), 10),
		fmt.Sprintf("LOCKSTEP_LEASE=%x", int64(s.Lease())),
	}
}

// run runs CMD while h holds and returns lockstep's exit code: CMD's, or
// exitLost if h ended first. Without CMD it prints h's variables and holds
// until a signal (exit 0) or the loss (exitLost).
func (h holding) run(ctx context.Context, cmd []string, grace time.Duration, stdout, stderr io.Writer) int {
	defer h.releaseQuietly()
	if len(cmd) == 0 {
		for _, kv := range h.env {
			fmt.Fprintln(stdout, kv)
		}
		select {
		case <-ctx.Done():
			if err := h.releaseNow(); err != nil {
				fmt.Fprintf(stderr, "lockstep %s: release %s: %s\n", h.cmd, h.what, errText(err))
			}
			return exitOK
		case <-h.own.Done():
			fmt.Fprintf(stderr, "lockstep %s: %s lost: %s\n", h.cmd, h.what, errText(h.own.Err()))
			return exitLost
		}
	}

	res := child{args: cmd, env: h.env, stdout: stdout, stderr: stderr, grace: grace}.run(ctx, h.own.Done())
	if res.err != nil {
		fmt.Fprintf(stderr, "lockstep %s: %s\n", h.cmd, errText(res.err))
		return res.code
	}
	// A loss noticed only after CMD exited may still have happened while
	// it ran: report it rather than vouch for a run we cannot vouch for.
	if res.stopped || h.own.Err() != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "lockstep %s: %s lost while CMD ran: %v (CMD exit code %d)\n", h.cmd, h.what, h.own.Err(), res.code)
		return exitLost
	}
	if err := h.releaseNow(); err != nil {
		fmt.Fprintf(stderr, "lockstep %s: release %s: %s (the session's end releases it)\n", h.cmd, h.what, errText(err))
	}
	return res.code
}

func (h holding) releaseNow() error {
	ctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
	defer cancel()
	return h.release(ctx)
}

// releaseQuietly releases what is still held on the way out.
func (h holding) releaseQuietly() {
	if h.own.Err() == nil {
		h.releaseNow()
	}
}
