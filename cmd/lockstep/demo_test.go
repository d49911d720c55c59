package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// The demo runs to completion and tells the four stories, and tells them
// as they should end.
func TestDemo(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	r := invoke(t, ctx, "demo")
	r.wantCode(t, exitOK)
	for _, want := range []string{
		"1. Index builder", "node-a is elected", "node-b is elected", "never two builders at once", "node-c is elected",
		"2. Job lock with a fencing token", "the storage refuses it", "refused by etcd too",
		"3. Batch workers in lockstep", "batch 3", "no worker started a batch before all had finished",
		"4. Priority work queue", `consumer-2 gets    "page on-call: disk full"   priority -10, attempt 2`, "Len = 0",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, bad := range []string{"should not happen", "yet a worker", "(a paused process can do that"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("demo output says %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

// Every example runs to completion, against the shared etcd (--endpoints)
// under a prefix of its own.
func TestExamples(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	eps := strings.Join(testutil.Server(t).Endpoints(), ",")
	tests := []struct {
		name string
		want string // in its output
	}{
		{"indexbuilder", "the index:"},
		{"joblock", "refused"},
		{"batchworkers", "batch 3: 4 partial results"},
		{"workqueue", "all 6 jobs done, 0 left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startCmd(t, built(t, tt.name), []string{"--endpoints", eps, "--prefix", testutil.Prefix(t)}, env(t), nil)
			if code := p.wait(ctx); code != 0 || !strings.Contains(p.stdout.String(), tt.want) {
				t.Fatalf("exit code %d, want 0 and %q in its output\nstdout:\n%s\nstderr:\n%s", code, tt.want, p.stdout, p.stderr)
			}
		})
	}
}
