package main

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestBarrierGate(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	gate := testutil.Prefix(t)

	invoke(t, ctx, "barrier", "hold", gate).wantCode(t, exitOK)
	invoke(t, ctx, "barrier", "hold", gate).wantCode(t, exitBusy)
	invoke(t, ctx, "barrier", "wait", "--timeout", "100ms", gate).wantCode(t, exitBusy)
	w := start(t, "barrier", "wait", gate)
	if resp, err := cli.Get(ctx, gate); err != nil || resp.Count != 1 {
		t.Fatalf("the gate's key: %v, %v; want it held", resp, err)
	}
	invoke(t, ctx, "barrier", "release", gate).wantCode(t, exitOK)
	if code := w.wait(ctx); code != exitOK {
		t.Fatalf("wait after release: exit code %d, stderr %q", code, w.stderr)
	}
	invoke(t, ctx, "barrier", "release", gate).wantCode(t, exitOK) // an open gate: not an error

	// With CMD the gate is held while CMD runs: a nested wait from CMD
	// (which finds etcd through LOCKSTEP_ENDPOINTS) times out, and the gate
	// opens when CMD exits.
	r := invoke(t, ctx, "barrier", "hold", gate, "--", "sh", "-c",
		built(t, "lockstep")+` barrier wait --timeout 100ms "$LOCKSTEP_NAME"; echo "nested wait: $?"; exit 4`)
	r.wantCode(t, 4)
	if !strings.Contains(r.stdout, "nested wait: 75") {
		t.Errorf("CMD's output %q: want the nested wait to time out while held", r.stdout)
	}
	invoke(t, ctx, "barrier", "wait", "--timeout", "10s", gate).wantCode(t, exitOK)
}

// barrier run: CMD starts only once --count participants have entered, and
// each exits with its CMD's code once all have finished.
func TestBarrierRun(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	participant := func(code string) *proc {
		return start(t, "barrier", "run", name, "--count", "3", "--", "sh", "-c", `echo "round $LOCKSTEP_ROUND"; exit `+code)
	}
	p1, p2 := participant("0"), participant("0")
	waitKeys(t, ctx, cli, name+"/parties", 2)
	if p1.stdout.String()+p2.stdout.String() != "" {
		t.Fatalf("CMD ran with 2 of 3 participants: %q %q", p1.stdout, p2.stdout)
	}
	p3 := participant("5")
	for i, tt := range []struct {
		p    *proc
		want int
	}{{p1, 0}, {p2, 0}, {p3, 5}} {
		if code := tt.p.wait(ctx); code != tt.want {
			t.Errorf("participant %d: exit code %d, want %d\nstderr:\n%s", i+1, code, tt.want, tt.p.stderr)
		}
	}
	if r1, r2, r3 := p1.stdout.String(), p2.stdout.String(), p3.stdout.String(); r1 != r2 || r2 != r3 || !strings.HasPrefix(r1, "round ") {
		t.Errorf("rounds %q %q %q: want one round for all", r1, r2, r3)
	}
	waitKeys(t, ctx, cli, name, 0) // nothing left behind
}

// enter and leave are each a whole rendezvous of --count processes.
func TestBarrierEnterLeave(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	name := testutil.Prefix(t)
	for _, verb := range []string{"enter", "leave"} {
		a := start(t, "barrier", verb, name, "--count", "2")
		waitKeys(t, ctx, cli, name+"/parties", 1)
		if a.exited() {
			t.Fatalf("%s returned with 1 of 2: stderr %q", verb, a.stderr)
		}
		invoke(t, ctx, "barrier", verb, name, "--count", "2").wantCode(t, exitOK)
		if code := a.wait(ctx); code != exitOK {
			t.Fatalf("%s: exit code %d, stderr %q", verb, code, a.stderr)
		}
	}
	invoke(t, ctx, "barrier", "enter", name, "--count", "2", "--timeout", "100ms").wantCode(t, exitBusy)
	waitKeys(t, ctx, cli, name, 0)
}

// A hold whose session ends while CMD runs is lost: lockstep stops CMD,
// exits 76, and leaves alone the hold someone else took meanwhile.
func TestBarrierHoldLostWhileCMDRuns(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	gate := testutil.Prefix(t)
	p := start(t, "barrier", "hold", gate, "--", "sh", "-c", "echo ready; while :; do sleep 0.05; done")
	p.waitOut(ctx, "ready")
	resp, err := cli.Get(ctx, gate)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the gate's key while CMD runs: %v, %v; want one, with a lease", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, gate, "someone else"); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(ctx); code != exitLost {
		t.Fatalf("exit code %d, want %d\nstderr:\n%s", code, exitLost, p.stderr)
	}
	resp, err = cli.Get(ctx, gate)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "someone else" {
		t.Fatalf("the gate's key after lockstep exited: %v, %v; want the other hold", resp, err)
	}
}
