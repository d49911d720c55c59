package keys_test

import (
	"errors"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		want   error
	}{
		{"/locks/report", nil},
		{"x", nil},
		{"", lockstep.ErrInvalidPrefix},
		{"/locks/report/", nil},
		{"/locks/report//", lockstep.ErrInvalidPrefix},
		{"/", lockstep.ErrInvalidPrefix},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			if err := keys.CheckPrefix(tt.prefix); !errors.Is(err, tt.want) {
				t.Fatalf("CheckPrefix: got %v, want %v", err, tt.want)
			}
		})
	}
}

// The lease key must be byte for byte the one etcd's concurrency package
// builds, or etcdctl lock and lockstep would not see each other.
func TestLeaseKeyMatchesEtcdLayout(t *testing.T) {
	lease := clientv3.LeaseID(0x694d8e0b2f3a1c05)
	got := keys.Lease("/locks/report", lease)
	want := fmt.Sprintf("%s%x", "/locks/report"+"/", lease)
	if got != want {
		t.Fatalf("Lease: got %q, want %q", got, want)
	}
	if keys.Dir("/locks/report") != "/locks/report/" {
		t.Fatalf("Dir: got %q", keys.Dir("/locks/report"))
	}
	// etcd's NewMutex(s, "/my-lock/") keys "/my-lock//<lease>".
	if got := keys.Lease("/my-lock/", lease); got != fmt.Sprintf("/my-lock//%x", lease) {
		t.Fatalf("Lease of a prefix with a trailing slash: got %q", got)
	}
}
