// Package keys holds the key conventions the primitives share.
package keys

import (
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
)

// CheckPrefix accepts a prefix the way etcd's concurrency package uses it:
// the separator is always added (see Dir), so "/locks/a" and "/locks/a/"
// name two different locks, there and here alike. It refuses an empty
// prefix, "/" alone, and one that ends in "//": none of them names
// anything a user would mean.
func CheckPrefix(prefix string) error {
	switch {
	case prefix == "" || prefix == "/":
		return fmt.Errorf("%w: %q", lockstep.ErrInvalidPrefix, prefix)
	case strings.HasSuffix(prefix, "//"):
		return fmt.Errorf("%w: %q ends in //", lockstep.ErrInvalidPrefix, prefix)
	}
	return nil
}

// Dir returns the prefix with its separator, as etcd's concurrency package
// makes it: the range that holds a primitive's keys.
func Dir(prefix string) string { return prefix + "/" }

// Lease returns the key etcd's concurrency Mutex and Election use for a
// session: the prefix, "/", and the lease ID in hexadecimal.
func Lease(prefix string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s/%x", prefix, int64(lease))
}
