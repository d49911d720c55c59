package election_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// etcdctl is a running `etcdctl elect` process and the lines it printed.
type etcdctl struct {
	cmd   *exec.Cmd
	lines chan string // closed when its stdout closes
}

func startEtcdctl(t *testing.T, args ...string) *etcdctl {
	t.Helper()
	bin := testutil.Etcdctl(t)
	args = append([]string{"--endpoints=" + strings.Join(testutil.Server(t).Endpoints(), ",")}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &etcdctl{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// line returns the next line etcdctl printed.
func (p *etcdctl) line(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatal("etcdctl exited")
		}
		return l
	case <-ctx.Done():
		t.Fatal("etcdctl printed nothing")
		return ""
	}
}

// keyValue reads the key and value lines etcdctl prints for a leader.
func (p *etcdctl) keyValue(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	return p.line(t, ctx), p.line(t, ctx)
}

// stop interrupts etcdctl, which resigns if it leads, and waits for it.
func (p *etcdctl) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range p.lines {
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("etcdctl: %v", err)
	}
}

// A leader elected by `etcdctl elect` is our leader, we queue behind it and
// take over when it resigns.
func TestInteropEtcdctlLeads(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	ctl := startEtcdctl(t, "elect", prefix, "from-etcdctl")
	key, value := ctl.keyValue(t, ctx)
	if value != "from-etcdctl" || !strings.HasPrefix(key, prefix+"/") {
		t.Fatalf("etcdctl printed %q %q", key, value)
	}
	e := newElection(t, cli, prefix)
	ld, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ld.Key != key || ld.Value != "from-etcdctl" {
		t.Fatalf("Leader: got %+v, want etcdctl's key %s", ld, key)
	}
	got := campaignAsync(ctx, e, "ours")
	waitKeys(t, ctx, cli, prefix, 2)
	select {
	case r := <-got:
		t.Fatalf("Campaign returned while etcdctl leads: %v", r.err)
	default:
	}
	ctl.stop(t)
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.term.Token() <= ld.Token {
		t.Fatalf("token %d not above etcdctl's %d", r.term.Token(), ld.Token)
	}
	r.term.Resign(ctx)
}

// `etcdctl elect` queues behind our leader and takes over when it resigns.
func TestInteropEtcdctlWaits(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	e := newElection(t, cli, prefix)
	term := campaign(t, ctx, e, "ours")
	ctl := startEtcdctl(t, "elect", prefix, "from-etcdctl")
	waitKeys(t, ctx, cli, prefix, 2)
	select {
	case l := <-ctl.lines:
		t.Fatalf("etcdctl printed %q while we lead", l)
	default:
	}
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	key, value := ctl.keyValue(t, ctx)
	if value != "from-etcdctl" {
		t.Fatalf("etcdctl elected with %q %q", key, value)
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ld.Key != key || ld.Token <= term.Token() {
		t.Fatalf("Leader: got %+v, want etcdctl's key %s with a token above %d", ld, key, term.Token())
	}
	ctl.stop(t)
}

// `etcdctl elect -l` sees our leader and its proclamations.
func TestInteropEtcdctlObserves(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	ctl := startEtcdctl(t, "elect", "-l", prefix)
	e := newElection(t, cli, prefix)
	term := campaign(t, ctx, e, "v1")
	if key, value := ctl.keyValue(t, ctx); key != term.Key() || value != "v1" {
		t.Fatalf("etcdctl observed %q %q, want %q v1", key, value, term.Key())
	}
	if err := term.Proclaim(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if key, value := ctl.keyValue(t, ctx); key != term.Key() || value != "v2" {
		t.Fatalf("etcdctl observed %q %q, want %q v2", key, value, term.Key())
	}
	term.Resign(ctx)
	ctl.stop(t)
}

func etcdElection(t *testing.T, cli *clientv3.Client, prefix string) *concurrency.Election {
	t.Helper()
	s, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return concurrency.NewElection(s, prefix)
}

// concurrency.Election and ours see each other's leaders and queue behind
// each other, both ways.
func TestInteropConcurrencyElection(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)

	t.Run("theirs leads", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		theirs := etcdElection(t, cli, prefix)
		if err := theirs.Campaign(ctx, "theirs"); err != nil {
			t.Fatal(err)
		}
		ours := newElection(t, cli, prefix)
		ld, err := ours.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ld.Key != theirs.Key() || ld.Value != "theirs" || ld.Token != theirs.Rev() {
			t.Fatalf("Leader: got %+v, want %s at %d", ld, theirs.Key(), theirs.Rev())
		}
		got := campaignAsync(ctx, ours, "ours")
		waitKeys(t, ctx, cli, prefix, 2)
		select {
		case r := <-got:
			t.Fatalf("Campaign returned while concurrency.Election leads: %v", r.err)
		default:
		}
		if err := theirs.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		r := await(t, ctx, got)
		if r.err != nil {
			t.Fatal(r.err)
		}
		resp, err := theirs.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Kvs[0].Key) != r.term.Key() || string(resp.Kvs[0].Value) != "ours" {
			t.Fatalf("their Leader: got %s=%s, want %s=ours", resp.Kvs[0].Key, resp.Kvs[0].Value, r.term.Key())
		}
		r.term.Resign(ctx)
	})

	t.Run("ours leads", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		ours := newElection(t, cli, prefix)
		term := campaign(t, ctx, ours, "ours")
		theirs := etcdElection(t, cli, prefix)
		done := make(chan error, 1)
		go func() { done <- theirs.Campaign(ctx, "theirs") }()
		waitKeys(t, ctx, cli, prefix, 2)
		select {
		case err := <-done:
			t.Fatalf("concurrency.Election returned while ours leads: %v", err)
		default:
		}
		if err := term.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("concurrency.Election did not take over")
		}
		ld, err := ours.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ld.Key != theirs.Key() || ld.Value != "theirs" || ld.Token <= term.Token() {
			t.Fatalf("Leader: got %+v, want %s with a token above %d", ld, theirs.Key(), term.Token())
		}
		theirs.Resign(ctx)
	})

	t.Run("observe each other", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		ours := newElection(t, cli, prefix)
		theirs := etcdElection(t, cli, prefix)
		octx, stop := context.WithCancel(ctx)
		defer stop()
		ourObs := ours.Observe(octx)
		theirObs := theirs.Observe(octx)
		expect(t, ctx, ourObs, election.Leader{})

		term := campaign(t, ctx, ours, "o1")
		for _, want := range []string{"o1", "o2"} {
			if want == "o2" {
				// etcd's Observe starts with the current value: proclaim
				// only once it has seen the first one.
				if err := term.Proclaim(ctx, "o2"); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case resp := <-theirObs:
				if string(resp.Kvs[0].Key) != term.Key() || string(resp.Kvs[0].Value) != want {
					t.Fatalf("their Observe: got %s=%s, want %s=%s", resp.Kvs[0].Key, resp.Kvs[0].Value, term.Key(), want)
				}
			case <-ctx.Done():
				t.Fatal("their Observe saw nothing")
			}
		}
		expect(t, ctx, ourObs, election.Leader{Value: "o1", Key: term.Key(), Lease: term.Session().Lease(), Token: term.Token()})
		expect(t, ctx, ourObs, leaderOf(term))
		term.Resign(ctx)
		expect(t, ctx, ourObs, election.Leader{})

		if err := theirs.Campaign(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if err := theirs.Proclaim(ctx, "t2"); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"t1", "t2"} {
			got := next(t, ctx, ourObs)
			if got.Key != theirs.Key() || got.Token != theirs.Rev() || got.Value != v {
				t.Fatalf("our Observe: got %+v, want %s at %d = %s", got, theirs.Key(), theirs.Rev(), v)
			}
		}
		theirs.Resign(ctx)
		expect(t, ctx, ourObs, election.Leader{})
		stop()
		drain(t, ourObs)
		for range theirObs {
		}
	})
}
