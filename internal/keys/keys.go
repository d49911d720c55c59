// Package keys holds the key conventions the primitives share.
package keys

import (
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
)

// CheckPrefix accepts a prefix the way etcd's concurrency package uses it:
// non-empty, without a trailing "/" (the separator is added here), so that
// "/locks/a" and "/locks/a/" cannot name two different locks.
func CheckPrefix(prefix string) error {
	switch {
	case prefix == "":
		return fmt.Errorf("%w: empty", lockstep.ErrInvalidPrefix)
	case strings.HasSuffix(prefix, "/"):
		return fmt.Errorf("%w: %q ends in /", lockstep.ErrInvalidPrefix, prefix)
	}
	return nil
}

// Dir returns the prefix with its separator: the range that holds a
// primitive's keys.
func Dir(prefix string) string { return prefix + "/" }

// Lease returns the key etcd's concurrency Mutex and Election use for a
// session: the prefix, "/", and the lease ID in hexadecimal.
func Lease(prefix string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s/%x", prefix, int64(lease))
}
