//go:build !unix

package embedded

// dbInUse cannot probe bbolt's lock here; the lockstep lock file still
// stops a second lockstep server.
func dbInUse(string) bool { return false }
