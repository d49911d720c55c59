package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// svcListed is one instance as svc list --json prints it.
type svcListed struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   int               `json:"weight"`
	Zone     string            `json:"zone"`
	Version  string            `json:"version"`
	Status   string            `json:"status"`
	Metadata map[string]string `json:"metadata"`
	Key      string            `json:"key"`
	Revision int64             `json:"revision"`
	Lease    string            `json:"lease"`
}

// listJSON runs svc list --json and parses what it prints.
func listJSON(t *testing.T, ctx context.Context, prefix, service string) []svcListed {
	t.Helper()
	args := []string{"svc", "list", "--json", "--prefix", prefix, service}
	r := invoke(t, ctx, args...)
	r.wantCode(t, exitOK, args...)
	var got []svcListed
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got == nil {
		t.Fatalf("svc list --json printed %q: want a JSON array (%v)", r.stdout, err)
	}
	return got
}

// register runs CMD while the instance is listed, with every field set;
// a lease revoked from outside is reported and the instance registered
// again while CMD goes on; when CMD exits the instance is drained, then
// deleted, and CMD's code is lockstep's.
func TestSvcRegisterWhileCMDRuns(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	key := prefix + "/web/a"
	stop := filepath.Join(t.TempDir(), "stop")
	p := start(t, "svc", "register", "--prefix", prefix, "--id", "a", "--weight", "3", "--zone", "z1",
		"--version", "1.2", "--meta", "k=v", "--meta", "team=core", "--drain", "100ms", "web", "127.0.0.1:8080", "--",
		"sh", "-c", `echo "ready $LOCKSTEP_NAME $LOCKSTEP_ID $LOCKSTEP_ADDR $LOCKSTEP_KEY"; while [ ! -e "$1" ]; do sleep 0.05; done; exit 3`,
		"sh", stop)
	p.waitOut(ctx, "ready")
	if want := "ready web a 127.0.0.1:8080 " + key + "\n"; !strings.Contains(p.stdout.String(), want) {
		t.Errorf("CMD's variables: %q, want %q", p.stdout, want)
	}

	got := listJSON(t, ctx, prefix, "web")
	if len(got) != 1 {
		t.Fatalf("listed %+v, want the one instance", got)
	}
	in := got[0]
	if in.Service != "web" || in.ID != "a" || in.Addr != "127.0.0.1:8080" || in.Weight != 3 || in.Zone != "z1" ||
		in.Version != "1.2" || in.Status != "serving" || in.Key != key || in.Revision <= 0 ||
		len(in.Metadata) != 2 || in.Metadata["k"] != "v" || in.Metadata["team"] != "core" {
		t.Errorf("listed %+v", in)
	}
	first, err := strconv.ParseInt(in.Lease, 16, 64)
	if err != nil || first == 0 {
		t.Fatalf("lease %q: want a lease ID in hex", in.Lease)
	}

	if _, err := cli.Revoke(ctx, clientv3.LeaseID(first)); err != nil {
		t.Fatal(err)
	}
	p.waitErr(ctx, "web/a registration lost")
	if err := p.stderr.waitCount(ctx, "web/a registered at 127.0.0.1:8080", 2); err != nil {
		t.Fatalf("not registered again after its lease was revoked:\n%s", p.stderr)
	}
	r := invoke(t, ctx, "svc", "list", "--prefix", prefix, "web")
	r.wantCode(t, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID ADDR WEIGHT ZONE VERSION STATUS LEASE META" {
		t.Fatalf("svc list:\n%s\nwant a header and one line", r.stdout)
	}
	f := strings.Fields(lines[1])
	if len(f) != 8 || strings.Join(f[:6], " ") != "a 127.0.0.1:8080 3 z1 1.2 serving" || f[7] != "k=v,team=core" {
		t.Errorf("svc list line %q", lines[1])
	}
	if again, err := strconv.ParseInt(f[6], 16, 64); err != nil || again == first {
		t.Errorf("lease after the revoke %q, want a new one (was %x)", f[6], first)
	}
	if p.exited() {
		t.Fatalf("lockstep exited when the lease was revoked\nstderr:\n%s", p.stderr)
	}

	before, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(ctx); code != 3 {
		t.Fatalf("exit code %d, want CMD's 3\nstderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "web/a deregistered") {
		t.Errorf("stderr lacks the deregistration:\n%s", p.stderr)
	}
	if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
		t.Errorf("keys left after CMD exited: %q", ks)
	}
	if got := listJSON(t, ctx, prefix, "web"); len(got) != 0 {
		t.Errorf("listed after CMD exited: %+v", got)
	}

	// etcd's history of the key: marked draining, then deleted.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var history []string
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(before.Header.Revision+1)) {
		for _, ev := range resp.Events {
			switch {
			case ev.Type == mvccpb.DELETE:
				history = append(history, "deleted")
			case strings.Contains(string(ev.Kv.Value), `"status":"draining"`):
				history = append(history, "draining")
			default:
				history = append(history, string(ev.Kv.Value))
			}
		}
		if n := len(history); n > 0 && history[n-1] == "deleted" {
			cancel()
		}
	}
	if strings.Join(history, ", ") != "draining, deleted" {
		t.Errorf("the key's history after CMD exited: %q, want draining, deleted", history)
	}
}

func TestSvcRegisterExitCodes(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	tests := []struct {
		name string
		cmd  []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"CMD's code", []string{"sh", "-c", "exit 5"}, 5},
		{"CMD killed by a signal", []string{"sh", "-c", "kill -KILL $$"}, 128 + int(syscall.SIGKILL)},
		{"CMD not found", []string{"/nonexistent/cmd"}, exitNoCmd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			args := append([]string{"svc", "register", "--prefix", prefix, "--drain", "0s", "web", "127.0.0.1:8080", "--"}, tt.cmd...)
			r := invoke(t, ctx, args...)
			r.wantCode(t, tt.want, args...)
			if !strings.Contains(r.stderr, "deregistered") {
				t.Errorf("stderr lacks the deregistration:\n%s", r.stderr)
			}
			if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
				t.Errorf("keys left: %q", ks)
			}
		})
	}
}

// SIGTERM and SIGINT reach CMD; lockstep deregisters and exits with CMD's
// code.
func TestSvcRegisterForwardsSignals(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGTERM, 7}, {syscall.SIGINT, 8}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			prefix := testutil.Prefix(t)
			p := start(t, "svc", "register", "--prefix", prefix, "--drain", "0s", "web", "127.0.0.1:8080", "--", "sh", "-c",
				`trap 'exit 7' TERM; trap 'exit 8' INT; echo ready; while :; do sleep 0.05; done`)
			p.waitOut(ctx, "ready")
			p.signal(tt.sig)
			if code := p.wait(ctx); code != tt.want {
				t.Fatalf("exit code %d, want CMD's %d\nstderr:\n%s", code, tt.want, p.stderr)
			}
			if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
				t.Errorf("keys left: %q", ks)
			}
		})
	}
}

// On a signal the instance is marked draining before CMD gets the signal:
// CMD, asked what etcd holds when the signal reaches it, sees the drain.
func TestSvcRegisterDrainsBeforeTheSignal(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	bin := built(t, "lockstep")
	p := start(t, "svc", "register", "--prefix", prefix, "--drain", "200ms", "web", "127.0.0.1:8080", "--", "sh", "-c",
		`trap '"$0" svc list --prefix `+prefix+` web; exit 7' TERM; echo ready; while :; do sleep 0.05; done`, bin)
	p.waitOut(ctx, "ready")
	p.signal(syscall.SIGTERM)
	if code := p.wait(ctx); code != 7 {
		t.Fatalf("exit code %d, want CMD's 7\nstderr:\n%s", code, p.stderr)
	}
	if out := p.stdout.String(); !strings.Contains(out, "draining") {
		t.Fatalf("what CMD saw when the signal came:\n%s\nwant the instance draining", out)
	}
	if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
		t.Errorf("keys left: %q", ks)
	}
}

// list reads lockstep's values and plain etcd naming ones, and skips what
// is neither.
func TestSvcListReadsEtcdNaming(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	for k, v := range map[string]string{
		"/web/a":   `{"Op":0,"Addr":"10.0.0.5:50051","Metadata":{"id":"a","weight":10,"zone":"eu-1","version":"1.4.2","status":"draining","metadata":{"az":"b"}}}`,
		"/web/b":   `{"Op":0,"Addr":"10.0.0.6:50051"}`,
		"/web/c":   `not json`,
		"/other/a": `{"Op":0,"Addr":"10.0.0.7:50051"}`,
		"/web-2/a": `{"Op":0,"Addr":"10.0.0.8:50051"}`,
	} {
		if _, err := cli.Put(ctx, prefix+k, v); err != nil {
			t.Fatal(err)
		}
	}
	got := listJSON(t, ctx, prefix, "web")
	var ids []string
	for _, in := range got {
		ids = append(ids, in.ID)
	}
	if strings.Join(ids, " ") != "a b" {
		t.Fatalf("listed IDs %q, want a b\n%+v", ids, got)
	}
	a, b := got[0], got[1]
	if a.Addr != "10.0.0.5:50051" || a.Weight != 10 || a.Zone != "eu-1" || a.Version != "1.4.2" || a.Status != "draining" ||
		a.Metadata["az"] != "b" || a.Key != prefix+"/web/a" || a.Lease != "0" {
		t.Errorf("lockstep's value read as %+v", a)
	}
	if b.Addr != "10.0.0.6:50051" || b.Weight != 1 || b.Status != "serving" || b.Metadata == nil || len(b.Metadata) != 0 {
		t.Errorf("etcd naming's value read as %+v", b)
	}
	r := invoke(t, ctx, "svc", "list", "--prefix", prefix, "web")
	r.wantCode(t, exitOK)
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	want := []string{"a 10.0.0.5:50051 10 eu-1 1.4.2 draining - az=b", "b 10.0.0.6:50051 1 - - serving - -"}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("svc list rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	r = invoke(t, ctx, "svc", "list", "--json", "--prefix", prefix, "nothing-here")
	r.wantCode(t, exitOK)
	if r.stdout != "[]\n" {
		t.Errorf("svc list --json of a service without instances: %q, want []", r.stdout)
	}
}

// watch prints the list, then the list after each change, until a
// signal.
func TestSvcWatch(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	tests := []struct {
		name          string
		flags         []string
		empty, listed string
	}{
		{"json", []string{"--json"}, "[]\n", `[{"service":"web","id":"a","addr":"127.0.0.1:8080","weight":1,`},
		{"text", nil, "--- web: 0 instances\n", "--- web: 1 instance\nID "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			w := start(t, append([]string{"svc", "watch", "--prefix", prefix, "web"}, tt.flags...)...)
			w.waitOut(ctx, tt.empty)
			reg := start(t, "svc", "register", "--prefix", prefix, "--id", "a", "--drain", "0s", "web", "127.0.0.1:8080")
			reg.waitOut(ctx, "LOCKSTEP_KEY="+prefix+"/web/a\n")
			w.waitOut(ctx, tt.listed)
			reg.signal(syscall.SIGTERM)
			if code := reg.wait(ctx); code != exitOK {
				t.Fatalf("register without CMD after SIGTERM: exit code %d, want 0\nstderr:\n%s", code, reg.stderr)
			}
			if err := w.stdout.waitCount(ctx, tt.empty, 2); err != nil {
				t.Fatalf("watch did not print the empty list again:\n%s", w.stdout)
			}
			w.signal(syscall.SIGINT)
			if code := w.wait(ctx); code != exitOK {
				t.Fatalf("watch after SIGINT: exit code %d, want 0\nstderr:\n%s", code, w.stderr)
			}
		})
	}
}

// An ID another live registration holds is waited for; --timeout gives up
// with the busy code and leaves the holder's key alone.
func TestSvcRegisterIDInUse(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	holder := start(t, "svc", "register", "--prefix", prefix, "--id", "a", "--drain", "0s", "web", "127.0.0.1:8080")
	holder.waitOut(ctx, "LOCKSTEP_KEY=")
	args := []string{"svc", "register", "--prefix", prefix, "--id", "a", "--timeout", "200ms", "web", "127.0.0.1:8081", "--", "echo", "never"}
	r := invoke(t, ctx, args...)
	r.wantCode(t, exitBusy, args...)
	if strings.Contains(r.stdout, "never") || !strings.Contains(r.stderr, "in use") {
		t.Errorf("stdout %q, stderr %q; want no CMD and the ID in use", r.stdout, r.stderr)
	}
	if got := listJSON(t, ctx, prefix, "web"); len(got) != 1 || got[0].Addr != "127.0.0.1:8080" {
		t.Errorf("listed %+v, want the holder's instance alone", got)
	}
	holder.signal(syscall.SIGTERM)
	if code := holder.wait(ctx); code != exitOK {
		t.Fatalf("holder: exit code %d, want 0\nstderr:\n%s", code, holder.stderr)
	}
	if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
		t.Errorf("keys left: %q", ks)
	}
}

// register, list and watch share one default prefix.
func TestSvcDefaultPrefix(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	service := strings.ReplaceAll(strings.TrimPrefix(testutil.Prefix(t), "/"), "/", "-")
	w := start(t, "svc", "watch", "--json", service)
	w.waitOut(ctx, "[]\n")
	reg := start(t, "svc", "register", "--id", "a", "--drain", "0s", service, "127.0.0.1:8080")
	reg.waitOut(ctx, "LOCKSTEP_KEY=")
	key := svcPrefix + "/" + service + "/a"
	w.waitOut(ctx, `"key":"`+key+`"`)
	r := invoke(t, ctx, "svc", "list", service)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "\na  ") {
		t.Errorf("svc list without --prefix:\n%s", r.stdout)
	}
	reg.signal(syscall.SIGTERM)
	reg.wait(ctx)
	if ks := keys(t, ctx, cli, svcPrefix+"/"+service); len(ks) != 0 {
		t.Errorf("keys left: %q", ks)
	}
}

// Bad input is refused with exit 2 before anything is written or run.
func TestSvcBadInput(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	cli := testutil.Client(t)
	marker := filepath.Join(t.TempDir(), "ran")
	const addr = "127.0.0.1:8080"
	tests := []struct {
		name    string
		args    []string // after "svc register --prefix P"
		wantErr string
	}{
		{"empty service", []string{"", addr}, "invalid service name"},
		{"service with a slash", []string{"a/b", addr}, "invalid service name"},
		{"address without a port", []string{"web", "127.0.0.1"}, "invalid address"},
		{"port out of range", []string{"web", "127.0.0.1:70000"}, "invalid address"},
		{"negative weight", []string{"--weight", "-1", "web", addr}, "invalid weight"},
		{"id with a slash", []string{"--id", "a/b", "web", addr}, "invalid instance id"},
		{"meta without =", []string{"--meta", "novalue", "web", addr}, `invalid value "novalue" for flag -meta`},
		{"meta with an empty key", []string{"--meta", "=v", "web", addr}, "non-empty key"},
		{"meta key twice", []string{"--meta", "k=1", "--meta", "k=2", "web", addr}, `key "k" given twice`},
		{"negative drain", []string{"--drain", "-1s", "web", addr}, "--drain -1s: must not be negative"},
		{"ttl under the minimum", []string{"--ttl", "1s", "web", addr}, "ttl"},
		{"no ADDR", []string{"web"}, "want SERVICE and ADDR"},
		{"nothing after --", []string{"web", addr, "--"}, "nothing to run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			args := append([]string{"svc", "register", "--prefix", prefix}, tt.args...)
			if tt.args[len(tt.args)-1] != "--" {
				args = append(args, "--", "touch", marker)
			}
			r := invoke(t, ctx, args...)
			r.wantCode(t, exitUsage, args...)
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, r.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("CMD ran")
			}
			if ks := keys(t, ctx, cli, prefix); len(ks) != 0 {
				t.Errorf("keys written: %q", ks)
			}
		})
	}

	for _, args := range [][]string{
		{"svc", "register", "--prefix", "/x//", "web", addr, "--", "touch", marker},
		{"svc", "list", ""},
		{"svc", "list", "a/b"},
		{"svc", "list", "--prefix", "/", "web"},
		{"svc", "watch", ""},
		{"svc", "watch", "web", "extra"},
	} {
		r := invoke(t, ctx, args...)
		r.wantCode(t, exitUsage, args...)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("CMD ran")
	}
}

func TestSvcUsage(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"lockstep help", []string{"--help"}, exitOK, []string{"svc "}, nil},
		{"svc help", []string{"svc", "--help"}, exitOK, []string{"register", "list", "watch", svcPrefix}, nil},
		{"svc alone", []string{"svc"}, exitUsage, nil, []string{"register"}},
		{"unknown svc command", []string{"svc", "deregister"}, exitUsage, nil, []string{`unknown command "deregister"`}},
		{"register help", []string{"svc", "register", "--help"}, exitOK,
			[]string{"usage: lockstep svc register", "-id", "host-pid", "-weight", "-zone", "-version", "-meta", "-ttl",
				"-drain", "-grace", "-timeout", "-prefix", svcPrefix, "LOCKSTEP_ADDR"}, nil},
		{"list help", []string{"svc", "list", "--help"}, exitOK, []string{"usage: lockstep svc list", "-json", "-prefix"}, nil},
		{"watch help", []string{"svc", "watch", "-h"}, exitOK, []string{"usage: lockstep svc watch", "-json", "SIGTERM"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := invoke(t, ctx, tt.args...)
			r.wantCode(t, tt.code, tt.args...)
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}
