package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// clientv3's Watch returns only once the server has created the watch. Cut
// off from etcd, a watch made for a session returns when the session ends,
// with a closed channel, not when the caller's ctx does.
func TestWatchEndsWithTheSession(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cfg, proxy := testutil.ProxiedConfig(t)
	cli := testutil.ClientWith(t, cfg)
	s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
	proxy.Blackhole()

	returned := make(chan bool)
	go func() {
		ch, stop := rpc.Watch(context.Background(), cli, s, testutil.Prefix(t))
		defer stop()
		_, open := <-ch
		returned <- open
	}()
	select {
	case open := <-returned:
		if open {
			t.Fatal("the watch delivered a response through a blackhole")
		}
	case <-ctx.Done():
		t.Fatal("Watch did not return after the session ended")
	}
	if err := s.Err(); !errors.Is(err, lockstep.ErrSessionLost) {
		t.Fatalf("session: %v, want lost", err)
	}
}

// A watch made for a live session delivers events until it is stopped.
func TestWatchDelivers(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	s := testutil.Session(t, cli)
	key := testutil.Prefix(t)
	ch, stop := rpc.Watch(ctx, cli, s, key)
	if _, err := cli.Put(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-ch:
		if len(resp.Events) != 1 || string(resp.Events[0].Kv.Value) != "v" {
			t.Fatalf("got %+v, want the put", resp)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}
	stop()
	for range ch {
	}
}
