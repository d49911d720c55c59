// Package rbac holds the tests that run every recipe against an etcd with
// TLS and authentication on, as a user whose role grants read and write on
// its own prefix only: each works there, and fails at once outside it with
// etcd's permission error, leaving nothing behind. docs/security.md has the
// roles each recipe needs.
package rbac
