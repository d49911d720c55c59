package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child runs a command while this process holds something (a lock, a
// permit, leadership, a queue claim). If ownership ends first, the command
// gets SIGTERM, then SIGKILL after grace: it must not go on working once
// someone else may hold what it needed.
type child struct {
	args   []string
	env    []string  // added to this process's environment
	stdin  io.Reader // nil: this process's stdin
	stdout io.Writer
	stderr io.Writer
	grace  time.Duration
}

// childResult says how a child ended.
type childResult struct {
	code    int  // exit code, 128+signal if a signal killed it
	stopped bool // we stopped it because ownership ended
	err     error
}

// run starts the command and waits for it. lost is closed when ownership
// ends. When interrupted ends (this process got SIGINT or SIGTERM) the
// child gets the same signal. Either way it is killed after the grace
// period.
//
// The child runs in a process group of its own (on Linux) and signals go to
// the whole group, so that a shell script's own children stop too. When the
// child exits, what is left of its group is killed; the child is killed if
// this process dies, and a second signal kills its whole group (killAll).
func (c child) run(interrupted context.Context, lost <-chan struct{}) childResult {
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	setProcAttr(cmd)
	if err := running.start(cmd); err != nil {
		code := exitNoRun
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = exitNoCmd
		}
		return childResult{code: code, err: fmt.Errorf("run %s: %w", c.args[0], err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- waitChild(cmd) }()

	stopped := false
	var (
		kill  *time.Timer
		killC <-chan time.Time
	)
	stop := func(sig syscall.Signal) {
		signalChild(cmd.Process, sig)
		if kill == nil {
			kill = time.NewTimer(c.grace)
			killC = kill.C
		}
	}
	defer func() {
		if kill != nil {
			kill.Stop()
		}
	}()
	intr := interrupted.Done()
	for {
		select {
		case err := <-exited:
			return childResult{code: exitCode(err), stopped: stopped}
		case <-lost:
			lost = nil
			// Ownership may end because this process got a signal
			// (elect's term ends with it): the child then gets that
			// signal, below, and was not stopped for a loss.
			if interrupted.Err() == nil {
				stopped = true
				stop(syscall.SIGTERM)
			}
		case <-intr:
			intr = nil
			sig := syscall.SIGTERM
			if s, ok := signalOf(interrupted); ok {
				sig = s
			}
			stop(sig)
		case <-killC:
			signalChild(cmd.Process, syscall.SIGKILL)
		}
	}
}

// exitCode follows the shell's convention: the exit status, or 128 plus the
// signal that killed the process.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return exitError
}

// running is the set of commands this process started and has not reaped,
// so that a second signal can kill them, with their process groups, before
// lockstep dies of it.
var running = children{procs: map[*os.Process]bool{}}

type children struct {
	mu    sync.Mutex
	procs map[*os.Process]bool
}

// start starts cmd and adds it to the set.
func (c *children) start(cmd *exec.Cmd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs[cmd.Process] = true
	return nil
}

// forget removes p from the set, running last under the set's lock: a
// concurrent killAll then never signals a group whose leader was reaped.
func (c *children) forget(p *os.Process, last func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.procs, p)
	last()
}

// killAll sends SIGKILL to every command in the set and its group.
func (c *children) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.procs {
		signalChild(p, syscall.SIGKILL)
	}
}
