//go:build unix

package embedded

import (
	"os"
	"syscall"
)

// dbInUse reports whether another process holds the bbolt lock on an etcd
// database file. bbolt uses flock, so only flock sees it.
func dbInUse(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false // no database yet, or not ours to open: let etcd decide
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return err == syscall.EWOULDBLOCK
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
