package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// status shows holders, waiters, leaders, permits, queue depths and barrier
// participants, each with its lease.
func TestStatusShowsWhoHoldsAndWaits(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	root := testutil.Prefix(t)
	lock, elect, sem, q, bar := root+"/lock", root+"/elect", root+"/sem", root+"/queue", root+"/batch"

	start(t, "lock", lock, "--", "sh", "-c", script).waitOut(ctx, "ready")
	start(t, "lock", lock, "--", "true")
	start(t, "elect", elect, "--id", "node-a", "--", "sh", "-c", script).waitOut(ctx, "ready")
	start(t, "elect", elect, "--id", "node-b", "--", "sh", "-c", script)
	start(t, "sem", sem, "--limit", "2", "--", "sh", "-c", script).waitOut(ctx, "ready")
	for _, v := range []string{"a", "b", "c"} {
		invoke(t, ctx, "queue", "push", q, v).wantCode(t, exitOK)
	}
	start(t, "queue", "pop", q, "--", "sh", "-c", script).waitOut(ctx, "ready")
	start(t, "barrier", "run", bar, "--count", "2", "--", "true")
	gate := root + "/gates/deploy"
	start(t, "barrier", "hold", gate, "--", "sh", "-c", script).waitOut(ctx, "ready")
	svc := root + "/services"
	start(t, "svc", "register", "--prefix", svc, "--id", "a1", "--weight", "3", "--zone", "z1",
		"greeter", "127.0.0.1:50051", "--", "sh", "-c", script).waitOut(ctx, "ready")
	for _, w := range []struct {
		prefix string
		n      int
	}{{lock, 2}, {elect, 2}, {bar + "/parties", 1}} {
		waitKeys(t, ctx, cli, w.prefix, w.n)
	}
	if _, err := cli.Put(ctx, root+"/gate", ""); err != nil {
		t.Fatal(err)
	}

	r := invoke(t, ctx, "status", root)
	r.wantCode(t, exitOK)
	_, holderLease := leaseOf(t, ctx, cli, lock)
	gateKV, err := cli.Get(ctx, gate)
	if err != nil || len(gateKV.Kvs) != 1 {
		t.Fatalf("gate %s: %v, %v", gate, gateKV, err)
	}
	for _, want := range []string{
		fmt.Sprintf(`lock +%s +holder +%x +\d+ +\d+s`, regexp.QuoteMeta(lock), int64(holderLease)),
		`lock +` + regexp.QuoteMeta(lock) + ` +waiting .*#1 in line`,
		`election +` + regexp.QuoteMeta(elect) + ` +leader .*"node-a"`,
		`election +` + regexp.QuoteMeta(elect) + ` +candidate .*"node-b" #1 in line`,
		`semaphore +` + regexp.QuoteMeta(sem) + ` +holder .*permit 1 of 2`,
		`queue +` + regexp.QuoteMeta(q) + ` +depth .*3 items, 1 being worked on`,
		`queue +` + regexp.QuoteMeta(q) + ` +worker .*priority 0, attempt 1`,
		`barrier +` + regexp.QuoteMeta(bar) + ` +entered .*waiting for a round \(count 2\)`,
		fmt.Sprintf(`gate +%s +held +%x +%d +\d+s +closed`, regexp.QuoteMeta(gate), gateKV.Kvs[0].Lease, gateKV.Kvs[0].CreateRevision),
		`service +` + regexp.QuoteMeta(svc+"/greeter") + ` +serving +[0-9a-f]+ +- +\d+s +a1 at 127.0.0.1:50051, weight 3, zone z1`,
		`1 other key not recognised`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("status lacks a line matching %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "only the first keys") {
		t.Errorf("status says it read only some keys:\n%s", r.stdout)
	}
	empty := invoke(t, ctx, "status", testutil.Prefix(t))
	if empty.code != exitOK || !strings.Contains(empty.stdout, "no locks, elections") {
		t.Errorf("status of an empty prefix: exit code %d:\n%s", empty.code, empty.stdout)
	}
}

// A gate is recognised by the value barrier.Hold writes, naming the key's
// own lease, on a key written once.
func TestIsGate(t *testing.T) {
	for _, tt := range []struct {
		value   string
		lease   int64
		version int64
		want    bool
	}{
		{"7f3a-0123456789abcdef", 0x7f3a, 1, true},
		{"0-0123456789abcdef", 0, 1, true},
		{"7f3a-0123456789abcdef", 0x7f3b, 1, false}, // another lease's
		{"7f3a-0123456789abcdef", 0x7f3a, 2, false}, // rewritten
		{"", 0, 1, false},                           // etcdctl put NAME ""
		{"7f3a-0123456789abcde", 0x7f3a, 1, false},
	} {
		kv := &mvccpb.KeyValue{Value: []byte(tt.value), Lease: tt.lease, Version: tt.version}
		if got := isGate(kv); got != tt.want {
			t.Errorf("isGate(value %q, lease %x, version %d) = %v, want %v", tt.value, tt.lease, tt.version, got, tt.want)
		}
	}
}
