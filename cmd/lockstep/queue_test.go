package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestQueuePushPopLen(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	q := testutil.Prefix(t)
	wantLen := func(t *testing.T, want string) {
		t.Helper()
		r := invoke(t, ctx, "queue", "len", q)
		r.wantCode(t, exitOK)
		if got := strings.TrimSpace(r.stdout); got != want {
			t.Fatalf("queue len: %q, want %q", got, want)
		}
	}
	push := func(args ...string) {
		t.Helper()
		r := invoke(t, ctx, append([]string{"queue", "push", q}, args...)...)
		r.wantCode(t, exitOK, args...)
		if len(strings.TrimSpace(r.stdout)) != 33 { // <prio>/<seq>
			t.Fatalf("push printed %q, want an item ID", r.stdout)
		}
	}
	push("low", "--priority", "5")
	push("first")
	push("second")
	push("--priority", "-1", "--", "-urgent") // "--": a value that starts with "-"
	wantLen(t, "4")

	pop := invoke(t, ctx, "queue", "pop", "--ack", q)
	pop.wantCode(t, exitOK)
	if pop.stdout != "-urgent\n" {
		t.Fatalf("pop: %q, want the most urgent item", pop.stdout)
	}
	wantLen(t, "3")
	// Without CMD, pop needs --ack: it acks at once, at most once.
	r0 := invoke(t, ctx, "queue", "pop", q)
	if r0.code != exitUsage || !strings.Contains(r0.stderr, "--ack") {
		t.Fatalf("pop without CMD and --ack: exit %d, %q; want 2 and --ack named", r0.code, r0.stderr)
	}
	invoke(t, ctx, "queue", "pop", "--ack", q, "--", "true").wantCode(t, exitUsage)
	wantLen(t, "3")
	push("--priority", "-2", "json me")
	r0 = invoke(t, ctx, "queue", "pop", "--ack", "--json", q)
	r0.wantCode(t, exitOK)
	var popped struct {
		ID       string `json:"id"`
		Value    string `json:"value"`
		Priority int    `json:"priority"`
		Attempts int    `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(r0.stdout), &popped); err != nil || popped.Value != "json me" || popped.Priority != -2 || popped.Attempts != 1 || len(popped.ID) != 33 {
		t.Fatalf("pop --json: %q, %v", r0.stdout, err)
	}

	// CMD fails: the item is given back, in its place, and delivered again.
	r := invoke(t, ctx, "queue", "pop", q, "--", "sh", "-c", `printf '%s|%s|%s|%s|' "$(cat)" "$LOCKSTEP_VALUE" "$LOCKSTEP_ATTEMPTS" "$LOCKSTEP_PRIORITY"; exit 3`)
	r.wantCode(t, 3)
	if r.stdout != "first|first|1|0|" {
		t.Fatalf("CMD saw %q, want value on stdin and in LOCKSTEP_VALUE, attempt 1, priority 0", r.stdout)
	}
	wantLen(t, "3")
	r = invoke(t, ctx, "queue", "pop", q, "--", "sh", "-c", `printf '%s|%s|%s' "$(cat)" "$LOCKSTEP_ATTEMPTS" "$LOCKSTEP_ITEM_ID"`)
	r.wantCode(t, exitOK)
	if !strings.HasPrefix(r.stdout, "first|2|") {
		t.Fatalf("CMD saw %q, want the nacked item again, attempt 2", r.stdout)
	}
	wantLen(t, "2")

	for _, want := range []string{"second", "low"} {
		pop := invoke(t, ctx, "queue", "pop", "--ack", q)
		if pop.code != exitOK || pop.stdout != want+"\n" {
			t.Fatalf("pop: exit code %d, %q; want 0, %q", pop.code, pop.stdout, want)
		}
	}
	wantLen(t, "0")
	invoke(t, ctx, "queue", "pop", "--ack", "--timeout", "100ms", q).wantCode(t, exitBusy)

	p := startCmd(t, built(t, "lockstep"), []string{"queue", "push", q, "-"}, env(t), []byte("from stdin"))
	if code := p.wait(ctx); code != exitOK {
		t.Fatalf("push -: exit code %d, stderr %q", code, p.stderr)
	}
	if pop := invoke(t, ctx, "queue", "pop", "--ack", q); pop.stdout != "from stdin\n" {
		t.Fatalf("pop after push -: %q", pop.stdout)
	}
}

// A claim lost while CMD runs: CMD is stopped, lockstep exits with the lost
// code and the item is delivered again.
func TestQueuePopClaimLost(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	q := testutil.Prefix(t)
	invoke(t, ctx, "queue", "push", q, "job").wantCode(t, exitOK)
	p := start(t, "queue", "pop", q, "--", "sh", "-c", script)
	p.waitOut(ctx, "ready")
	claim, _ := leaseOf(t, ctx, cli, q+"/claims")
	if _, err := cli.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(ctx); code != exitLost || !strings.Contains(p.stdout.String(), "term") {
		t.Fatalf("exit code %d, stdout %q, stderr %q; want %d and CMD stopped", code, p.stdout, p.stderr, exitLost)
	}
	r := invoke(t, ctx, "queue", "pop", q, "--", "sh", "-c", `echo "$LOCKSTEP_VALUE $LOCKSTEP_ATTEMPTS"`)
	if r.code != exitOK || r.stdout != "job 2\n" {
		t.Fatalf("redelivery: exit code %d, %q; want 0, \"job 2\"", r.code, r.stdout)
	}
}

// push and len need no session: they grant no lease. pop, which claims,
// grants one.
func TestQueuePushAndLenTakeNoLease(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	q := testutil.Prefix(t)
	before := testutil.LeasesGranted(t)
	invoke(t, ctx, "queue", "push", q, "v").wantCode(t, exitOK)
	invoke(t, ctx, "queue", "len", q).wantCode(t, exitOK)
	if got := testutil.LeasesGranted(t) - before; got != 0 {
		t.Fatalf("push and len granted %d leases, want 0", got)
	}
	invoke(t, ctx, "queue", "pop", "--ack", q).wantCode(t, exitOK)
	if got := testutil.LeasesGranted(t) - before; got != 1 {
		t.Fatalf("pop granted %d leases, want 1", got)
	}
}

// list, peek, rm and purge, from a shell: what a consumer holds shows as
// claimed, peek skips it, rm takes it from the consumer (exit 76), and
// purge empties the queue.
func TestQueueAdmin(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	q := testutil.Prefix(t)
	var ids []string
	for _, v := range []string{"one", "two", "three"} {
		r := invoke(t, ctx, "queue", "push", q, v)
		r.wantCode(t, exitOK)
		ids = append(ids, strings.TrimSpace(r.stdout))
	}
	holder := start(t, "queue", "pop", q, "--", "sh", "-c", script)
	holder.waitOut(ctx, "ready")

	r := invoke(t, ctx, "queue", "list", q)
	r.wantCode(t, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") ||
		!regexp.MustCompile(`^`+ids[0]+` +0 +1 +[0-9a-f]+ +"one"$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^`+ids[1]+` +0 +0 +- +"two"$`).MatchString(lines[2]) {
		t.Fatalf("queue list:\n%s", r.stdout)
	}
	r = invoke(t, ctx, "queue", "list", "--json", "--limit", "2", q)
	r.wantCode(t, exitOK)
	var items []struct {
		ID         string `json:"id"`
		Value      string `json:"value"`
		Attempts   int    `json:"attempts"`
		Claimed    bool   `json:"claimed"`
		ClaimLease string `json:"claim_lease"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &items); err != nil || len(items) != 2 ||
		items[0].ID != ids[0] || !items[0].Claimed || items[0].ClaimLease == "0" || items[1].Value != "two" || items[1].Claimed {
		t.Fatalf("queue list --json: %q, %v", r.stdout, err)
	}
	r = invoke(t, ctx, "queue", "peek", q)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, ids[1]) {
		t.Fatalf("queue peek: %q, want %s, the first item nobody holds", r.stdout, ids[1])
	}

	invoke(t, ctx, "queue", "rm", q, ids[0]).wantCode(t, exitOK)
	if code := holder.wait(ctx); code != exitLost {
		t.Fatalf("the holder of a removed item: exit code %d, want %d\nstderr: %s", code, exitLost, holder.stderr)
	}
	invoke(t, ctx, "queue", "rm", q, ids[0]).wantCode(t, exitError)
	invoke(t, ctx, "queue", "rm", q, "no-such-id").wantCode(t, exitUsage)
	invoke(t, ctx, "queue", "purge", q).wantCode(t, exitUsage)
	r = invoke(t, ctx, "queue", "purge", "--yes", q)
	r.wantCode(t, exitOK)
	if strings.TrimSpace(r.stdout) != "2" {
		t.Fatalf("queue purge: %q, want 2", r.stdout)
	}
	invoke(t, ctx, "queue", "peek", q).wantCode(t, exitBusy)
}

// queue move sends a dead letter back to its queue.
func TestQueueMove(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	q := testutil.Prefix(t)
	dead := q + "-dead"
	r := invoke(t, ctx, "queue", "push", dead, "poison")
	r.wantCode(t, exitOK)
	id := strings.TrimSpace(r.stdout)
	invoke(t, ctx, "queue", "move", dead, id).wantCode(t, exitUsage) // no --to
	r = invoke(t, ctx, "queue", "move", "--to", q, dead, id)
	r.wantCode(t, exitOK)
	if moved := strings.TrimSpace(r.stdout); len(moved) != 33 || moved == id {
		t.Fatalf("queue move printed %q, want the new ID", r.stdout)
	}
	invoke(t, ctx, "queue", "move", "--to", q, dead, id).wantCode(t, exitError) // gone
	if pop := invoke(t, ctx, "queue", "pop", "--ack", q); pop.stdout != "poison\n" {
		t.Fatalf("pop after move: %q", pop.stdout)
	}
}
