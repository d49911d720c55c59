package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Interop tests run real etcd binaries. CI builds them at the pinned etcd
// version and points these variables at them; a developer without them
// gets a skip, unless LOCKSTEP_REQUIRE_INTEROP=1 makes that a failure.
const (
	envEtcdctl        = "LOCKSTEP_ETCDCTL"
	envEtcd           = "LOCKSTEP_ETCD"
	envRequireInterop = "LOCKSTEP_REQUIRE_INTEROP"
)

// Etcdctl returns the path of an etcdctl binary: $LOCKSTEP_ETCDCTL, or
// etcdctl on the PATH.
func Etcdctl(t testing.TB) string {
	t.Helper()
	return binary(t, envEtcdctl, "etcdctl")
}

// Etcd returns the path of an etcd server binary: $LOCKSTEP_ETCD, or etcd
// on the PATH.
func Etcd(t testing.TB) string {
	t.Helper()
	return binary(t, envEtcd, "etcd")
}

func binary(t testing.TB, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv(envRequireInterop) == "1" {
		t.Fatalf("%s not found: set %s or put it on the PATH (.ci/run builds it)", name, env)
	}
	t.Skipf("%s not found: set %s or put it on the PATH to run interop tests", name, env)
	return ""
}
