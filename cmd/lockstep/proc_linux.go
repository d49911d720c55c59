package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcAttr puts the child in a process group of its own, so that it and
// its children can be signalled together, and has the kernel kill it if
// this process dies: a lock holder's command must not outlive the holder.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalChild signals the child's whole process group.
func signalChild(p *os.Process, sig syscall.Signal) {
	syscall.Kill(-p.Pid, sig)
}

// waitChild waits for the child to exit, kills what is left of its process
// group (a grandchild that trapped SIGTERM, a job it put in the
// background), and only then reaps it: until it is reaped, its pid, which
// is the group's id, cannot be reused by an unrelated process.
func waitChild(cmd *exec.Cmd) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	running.forget(cmd.Process, func() { signalChild(cmd.Process, syscall.SIGKILL) })
	return cmd.Wait()
}
