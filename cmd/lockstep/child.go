package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child runs a command while this process holds something (a lock, a
// permit, leadership). If ownership ends first, the command gets SIGTERM,
// then SIGKILL after grace.
type child struct {
	args   []string
	env    []string // added to this process's environment
	grace  time.Duration
	stdout io.Writer
	stderr io.Writer
}

// childResult says how a child ended.
type childResult struct {
	code    int  // exit code, 128+signal if it was killed by a signal
	stopped bool // we stopped it because ownership ended
	err     error
}

// run starts the command and waits for it. lost is closed when ownership
// ends; interrupted ends when this process is asked to stop, and the child
// gets the same SIGTERM.
func (c child) run(interrupted context.Context, lost <-chan struct{}) childResult {
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stdout, c.stderr
	if err := cmd.Start(); err != nil {
		return childResult{code: 127, err: fmt.Errorf("start %s: %w", c.args[0], err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	stopped := false
	var kill <-chan time.Time
	for {
		select {
		case err := <-exited:
			return childResult{code: exitCode(err), stopped: stopped}
		case <-lost:
			lost, stopped = nil, true
			cmd.Process.Signal(syscall.SIGTERM)
			kill = time.After(c.grace)
		case <-interrupted.Done():
			interrupted = context.Background() // forward once
			cmd.Process.Signal(syscall.SIGTERM)
			kill = time.After(c.grace)
		case <-kill:
			cmd.Process.Kill()
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
