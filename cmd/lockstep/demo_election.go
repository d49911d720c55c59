package main

import (
	"context"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/leaderjob"
)

// electionEvent is what a replica reports: elected, or its job stopped.
type electionEvent struct {
	at      time.Time
	who     string
	elected bool
	token   int64
}

// replica is one index builder: a leaderjob runner with its own client,
// connected through a proxy so that the demo can cut it off.
type replica struct {
	name  string
	proxy *faultproxy.Proxy
	cli   *clientv3.Client
	stop  context.CancelFunc
	done  chan error
}

func (d *demo) election(ctx context.Context) error {
	const prefix = "/demo/elect/index-builder"
	d.n.story("1. Index builder: three replicas, one leader (leaderjob)", `
Three replicas of an index builder campaign for `+prefix+`.
Only the leader builds the index. We cut the leader off from etcd and
watch who builds.`, true)

	events := make(chan electionEvent, 64)
	var replicas []*replica
	defer func() {
		for _, r := range replicas {
			r.close()
		}
	}()
	start := func(name string) error {
		r, err := d.startReplica(ctx, prefix, name, events)
		if err == nil {
			replicas = append(replicas, r)
		}
		return err
	}
	next := func() (electionEvent, error) {
		select {
		case e := <-events:
			return e, nil
		case <-ctx.Done():
			return electionEvent{}, ctx.Err()
		}
	}

	if err := start("node-a"); err != nil {
		return err
	}
	first, err := next()
	if err != nil {
		return err
	}
	d.n.at(first.at, "%s is elected (fencing token %d) and starts building the index", first.who, first.token)
	for i, name := range []string{"node-b", "node-c"} {
		if err := start(name); err != nil {
			return err
		}
		if err := d.waitKeys(ctx, prefix, int64(i+2)); err != nil {
			return err
		}
	}
	d.n.at(time.Now(), "node-b and node-c campaign too; they wait in line, in that order")
	if err := pause(ctx, 500*time.Millisecond); err != nil {
		return err
	}

	crash := time.Now()
	replicas[0].proxy.Blackhole()
	d.n.at(crash, "node-a is cut off from etcd: its packets vanish. To etcd this is a crash:")
	d.n.say("no resign, no goodbye, just a lease that is no longer renewed.")
	var stopped, successor electionEvent
	for stopped.at.IsZero() || successor.at.IsZero() {
		e, err := next()
		if err != nil {
			return err
		}
		switch {
		case e.who == "node-a" && !e.elected:
			stopped = e
			d.n.at(e.at, "node-a, still running but cut off, cannot renew its lease. Its session ends")
			d.n.say("1 s (the safety margin) before the lease can expire, and its build is cancelled.")
		case e.elected:
			successor = e
			d.n.at(e.at, "%s is elected (token %d > %d) and starts building, %s after the cut:", e.who, e.token, first.token, ms(e.at.Sub(crash)))
			d.n.say("node-a's lease expired on the server; %s was next in line.", e.who)
		}
	}
	if stopped.at.Before(successor.at) {
		d.n.say("node-a stopped %s before %s started: never two builders at once.", ms(successor.at.Sub(stopped.at)), successor.who)
	} else {
		d.n.say("node-a stopped %s after %s started (a paused process can do that; fencing covers it).", ms(stopped.at.Sub(successor.at)), successor.who)
	}

	// A graceful stop, for contrast: the successor needs no TTL.
	leader := replicas[1]
	if successor.who == "node-c" {
		leader = replicas[2]
	}
	resign := time.Now()
	leader.stop()
	for {
		e, err := next()
		if err != nil {
			return err
		}
		if e.elected {
			d.n.at(resign, "%s shuts down cleanly: it stops its build and resigns.", leader.name)
			d.n.at(e.at, "%s is elected %s later (token %d): a clean handover waits for no TTL.", e.who, ms(e.at.Sub(resign)), e.token)
			return nil
		}
	}
}

// startReplica starts a runner named name, reporting to events.
func (d *demo) startReplica(ctx context.Context, prefix, name string, events chan<- electionEvent) (*replica, error) {
	u, err := url.Parse(d.endpoint)
	if err != nil {
		return nil, err
	}
	proxy, err := faultproxy.New("127.0.0.1:0", u.Host)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + proxy.Addr()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		proxy.Close()
		return nil, err
	}
	report := func(e electionEvent) {
		select {
		case events <- e:
		case <-ctx.Done():
		}
	}
	build := func(jctx context.Context, t *election.Term) error {
		report(electionEvent{at: time.Now(), who: name, elected: true, token: t.Token()})
		<-jctx.Done() // building the index, until leadership ends
		report(electionEvent{at: time.Now(), who: name})
		return jctx.Err()
	}
	runner, err := leaderjob.New(cli, prefix, build, leaderjob.WithIdentity(name), leaderjob.WithTTL(demoTTL))
	if err != nil {
		cli.Close()
		proxy.Close()
		return nil, err
	}
	rctx, stop := context.WithCancel(ctx)
	r := &replica{name: name, proxy: proxy, cli: cli, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- runner.Run(rctx) }()
	return r, nil
}

// close stops the replica and waits for its runner, which resigns if it
// still leads.
func (r *replica) close() {
	r.stop()
	<-r.done
	r.cli.Close()
	r.proxy.Close()
}
