package lockstep_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestNewSessionRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	tests := []struct {
		name string
		cli  *clientv3.Client
		opts []lockstep.SessionOption
		want error
	}{
		{"nil client", nil, nil, lockstep.ErrNilClient},
		{"zero ttl", cli, []lockstep.SessionOption{lockstep.WithTTL(0)}, lockstep.ErrInvalidTTL},
		{"negative ttl", cli, []lockstep.SessionOption{lockstep.WithTTL(-time.Second)}, lockstep.ErrInvalidTTL},
		{"ttl under server minimum", cli, []lockstep.SessionOption{lockstep.WithTTL(time.Second)}, lockstep.ErrInvalidTTL},
		{"fractional ttl", cli, []lockstep.SessionOption{lockstep.WithTTL(2500 * time.Millisecond)}, lockstep.ErrInvalidTTL},
		{"zero margin", cli, []lockstep.SessionOption{lockstep.WithMargin(0)}, lockstep.ErrInvalidMargin},
		{"negative margin", cli, []lockstep.SessionOption{lockstep.WithMargin(-time.Second)}, lockstep.ErrInvalidMargin},
		{"margin over half the ttl", cli, []lockstep.SessionOption{lockstep.WithTTL(4 * time.Second), lockstep.WithMargin(3 * time.Second)}, lockstep.ErrInvalidMargin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := lockstep.NewSession(ctx, tt.cli, tt.opts...)
			if !errors.Is(err, tt.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("NewSession: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSessionGrantsLeaseWithTTL(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli, lockstep.WithTTL(7*time.Second))
	resp, err := cli.TimeToLive(ctx, s.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GrantedTTL != 7 {
		t.Errorf("granted TTL: got %d, want 7", resp.GrantedTTL)
	}
	if s.Err() != nil {
		t.Errorf("Err of a live session: got %v, want nil", s.Err())
	}
	if s.Client() != cli || s.TTL() != 7*time.Second {
		t.Errorf("Client/TTL: got %p/%v", s.Client(), s.TTL())
	}
}

func TestSessionOutlivesItsTTL(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
	select {
	case <-s.Done():
		t.Fatalf("session lost while the server was reachable: %v", s.Err())
	case <-time.After(5 * time.Second): // two and a half TTLs
	}
	resp, err := cli.TimeToLive(ctx, s.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL <= 0 {
		t.Fatalf("lease TTL after renewals: got %d, want > 0", resp.TTL)
	}
}

func TestCloseRevokesLeaseAndIsIdempotent(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, testutil.Prefix(t), "x", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionClosed) {
		t.Fatalf("Err after Close: got %v, want ErrSessionClosed", s.Err())
	}
	resp, err := cli.TimeToLive(ctx, s.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL != -1 {
		t.Fatalf("lease TTL after Close: got %d, want -1 (revoked)", resp.TTL)
	}
}

func TestSessionLostWhenLeaseRevokedElsewhere(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
	testutil.Revoke(t, cli, s)
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("session not lost after its lease was revoked")
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("Err: got %v, want ErrSessionLost", s.Err())
	}
}

// proxiedClient returns a client that reaches the shared server through a
// fault proxy.
func proxiedClient(t *testing.T) (*clientv3.Client, *faultproxy.Proxy) {
	t.Helper()
	cfg, p := testutil.ProxiedConfig(t)
	return testutil.ClientWith(t, cfg), p
}

// The central promise: when renewals stop reaching the server, Done closes
// before the server expires the lease and deletes what the session owned.
func TestDoneClosesBeforeServerExpiresLease(t *testing.T) {
	cli, proxy := proxiedClient(t)
	observer := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli, lockstep.WithTTL(3*time.Second))
	key := testutil.Prefix(t)
	put, err := cli.Put(ctx, key, "owned", clientv3.WithLease(s.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	deleted := make(chan time.Time, 1)
	go func() {
		for resp := range observer.Watch(ctx, key, clientv3.WithRev(put.Header.Revision+1)) {
			for _, ev := range resp.Events {
				if ev.Type == mvccpb.DELETE {
					deleted <- time.Now()
					return
				}
			}
		}
	}()

	proxy.Blackhole()
	var doneAt time.Time
	select {
	case <-s.Done():
		doneAt = time.Now()
	case <-ctx.Done():
		t.Fatal("session not lost while its server was unreachable")
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("Err: got %v, want ErrSessionLost", s.Err())
	}
	select {
	case at := <-deleted:
		if !doneAt.Before(at) {
			t.Fatalf("Done closed at %v, after the server deleted the session's key at %v", doneAt, at)
		}
		t.Logf("Done closed %v before the server expired the lease", at.Sub(doneAt))
	case <-ctx.Done():
		t.Fatal("server never expired the lease")
	}
}

func TestOneLostKeepaliveDoesNotLoseSession(t *testing.T) {
	cli, proxy := proxiedClient(t)
	ctx := testutil.Context(t, 30*time.Second)
	// 5s TTL, 1s margin: renewals every 1.33s, Done at 4s without one.
	s := testutil.Session(t, cli, lockstep.WithTTL(5*time.Second))
	time.Sleep(100 * time.Millisecond)
	proxy.Blackhole()
	time.Sleep(1500 * time.Millisecond) // at least one renewal is lost
	proxy.Pass()
	select {
	case <-s.Done():
		t.Fatalf("session lost after one lost keepalive: %v", s.Err())
	case <-time.After(5 * time.Second):
	}
	resp, err := cli.TimeToLive(ctx, s.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL <= 0 {
		t.Fatalf("lease TTL: got %d, want > 0", resp.TTL)
	}
}

func TestNewSessionReturnsWhenCtxEndsWithNoServer(t *testing.T) {
	_, proxy := proxiedClient(t)
	proxy.Refuse()
	cfg := testutil.Server(t).ClientConfig()
	cfg.Endpoints = []string{"http://" + proxy.Addr()}
	cli := testutil.ClientWith(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s, err := lockstep.NewSession(ctx, cli)
	if err == nil {
		s.Close()
		t.Fatal("NewSession succeeded with no server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewSession: got %v, want context.DeadlineExceeded", err)
	}
}

func TestCloseIsBoundedWithNoServer(t *testing.T) {
	cli, proxy := proxiedClient(t)
	s, err := lockstep.NewSession(testutil.Context(t, 10*time.Second), cli, lockstep.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("Close reported a successful revoke through a blackhole")
		}
	case <-time.After(30 * time.Second): // a hang, not a slow machine
		t.Fatal("Close did not return with no server answering")
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionClosed) {
		t.Fatalf("Err: got %v, want ErrSessionClosed", s.Err())
	}
}

// TestSessionSurvivesAMemberCutOff checks that a session whose client knows
// every member of a cluster outlives one member, leader or not, being cut
// off from its peers for twice the TTL: a keepalive sent to that member
// hangs there, and the session must try another member before its window
// runs out.
func TestSessionSurvivesAMemberCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member cluster")
	}
	const ttl = 6 * time.Second
	ctx := testutil.Context(t, 2*time.Minute)
	c, err := embedded.StartCluster(ctx, 3, embedded.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cutLeader := range []bool{false, true} {
		leader, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cut *embedded.Member
		for _, m := range c.Members() {
			if (m == leader) == cutLeader {
				cut = m
				break
			}
		}
		var ss []*lockstep.Session
		for range 4 {
			cli, err := c.Client()
			if err != nil {
				t.Fatal(err)
			}
			ss = append(ss, testutil.Session(t, cli, lockstep.WithTTL(ttl)))
		}
		cut.Partition()
		time.Sleep(2 * ttl)
		cut.Heal()
		for i, s := range ss {
			if err := s.Err(); err != nil {
				t.Fatalf("leader cut off %v: session %d lost: %v", cutLeader, i, err)
			}
		}
	}
}

// Closing the client ends the session at once, not at its deadline (TTL
// minus margin, almost a minute here), and Close then does not try to send
// a revoke (clientv3 spends seconds failing to).
func TestSessionEndsWhenClientCloses(t *testing.T) {
	cli := testutil.ClientWith(t, testutil.Server(t).ClientConfig())
	s, err := lockstep.NewSession(testutil.Context(t, 10*time.Second), cli, lockstep.WithTTL(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cli.Close()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second): // the deadline is 54s away
		t.Fatal("session still alive 30s after its client was closed")
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("Err: got %v, want ErrSessionLost", s.Err())
	}
	if err := s.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: got %v, want the closed client's context.Canceled", err)
	}
}

// CloseWithoutRevoke ends the session but leaves its lease to expire; a
// Close after it changes nothing.
func TestCloseWithoutRevokeLeavesLease(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli := testutil.Client(t)
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWithoutRevoke(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.Err(), lockstep.ErrSessionClosed) {
		t.Fatalf("Err: got %v, want ErrSessionClosed", s.Err())
	}
	resp, err := cli.TimeToLive(ctx, s.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL <= 0 {
		t.Fatal("the lease was revoked")
	}
	if _, err := cli.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
}
