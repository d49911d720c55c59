//go:build !linux

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr leaves the child in this process's group: outside Linux there
// is no way to have it killed when this process dies, and a group of its
// own would then outlive us unnoticed.
func setProcAttr(cmd *exec.Cmd) {}

// signalChild signals the child only.
func signalChild(p *os.Process, sig syscall.Signal) {
	p.Signal(sig)
}

// waitChild waits for the child to exit.
func waitChild(cmd *exec.Cmd) error {
	err := cmd.Wait()
	running.forget(cmd.Process, func() {})
	return err
}
