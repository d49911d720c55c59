package main

import (
	"os"
	"os/exec"
	"syscall"
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
