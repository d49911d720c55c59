package leaderjob_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// A campaign that etcd refuses on its merits (the user's role does not
// grant the election's keys) will be refused again: Run returns the error
// instead of retrying it for ever.
func TestRunReturnsPermissionDenied(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli, loser := testutil.LosingClient(t)
	loser.Deny("Txn", nil)
	r, err := leaderjob.New(cli, testutil.Prefix(t), func(context.Context, *election.Term) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(ctx)
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("Run: got %v, want an error wrapping permission denied", err)
	}
}
