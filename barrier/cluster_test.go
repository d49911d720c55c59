package barrier_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// TestDoubleBarrierMemberFaults runs rounds on a three-member cluster while
// members fail under the participants: the leader crashes and comes back,
// then a member is cut off from its peers and healed. Watches are cut,
// transactions fail and are retried; the rounds must go on, in order, and
// leave nothing behind.
func TestDoubleBarrierMemberFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member cluster")
	}
	const workers, rounds = 4, 40
	ctx := testutil.Context(t, 3*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := func() *clientv3.Client {
		cli, err := c.Client()
		if err != nil {
			t.Fatal(err)
		}
		return cli
	}

	prefix := testutil.Prefix(t)
	rec := &recorder{cli: client(), prefix: testutil.Prefix(t)}
	var stopped *embedded.Member
	cut, healed := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-cut:
			<-healed // the heal timer is done before the cluster closes
		default:
		}
	}()
	faults := func(i int) {
		var err error
		switch i {
		case 10:
			stopped, err = c.WaitLeader(ctx)
			if err == nil {
				err = stopped.Stop()
			}
		case 15:
			err = stopped.Restart(ctx)
		case 25:
			// Cut a member off for two seconds, whatever the rounds do
			// meanwhile: requests that reach it hang, and watches on it go
			// quiet until it gives up on its leader. Not longer: the
			// sessions' keepalives can land on it too, and a long cut can
			// cost a session.
			m := c.Members()[1]
			m.Partition()
			close(cut)
			time.AfterFunc(2*time.Second, func() {
				m.Heal()
				close(healed)
			})
		}
		if err != nil {
			t.Errorf("fault at round %d: %v", i, err)
		}
	}
	errs := make(chan error, workers)
	for i := range workers {
		cli := client()
		s, err := lockstep.NewSession(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		d, err := barrier.NewDouble(s, prefix, workers)
		if err != nil {
			t.Fatal(err)
		}
		var pause func(int)
		if i == 0 {
			pause = faults
		}
		go func() { errs <- work(ctx, rec, fmt.Sprintf("w%d", i), d, rounds, pause) }()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkOrder(t, rec.recs, workers, rounds, nil)
	if ks := keysUnder(t, ctx, rec.cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the last round: %v", ks)
	}
}
