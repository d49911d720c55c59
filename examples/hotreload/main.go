// Command hotreload is a small HTTP service that reads its settings from
// etcd through package config and picks up every change without a
// restart. The program changes the settings itself, as an operator would
// with 'lockstep config put' (it prints the command line): a good version
// is served at once, a bad one is rejected while the service keeps the
// last good one, and a rollback restores the version before.
//
//	go run ./examples/hotreload                          # against an embedded etcd
//	go run ./examples/hotreload --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/config"
	"github.com/lockstep-go/lockstep/embedded"
)

// settings is the service's configuration, one JSON document in etcd.
type settings struct {
	Greeting string `json:"greeting"`
	Shout    bool   `json:"shout"`
}

func (s settings) validate() error {
	if s.Greeting == "" {
		return errors.New("greeting is empty")
	}
	return nil
}

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/hotreload/", "the configuration's prefix")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, stop, err := connect(ctx, *endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	key := *prefix + "settings.json"

	first := put(ctx, cli, key, `{"greeting": "hello"}`, -1)
	cfg, err := config.Open(ctx, cli, *prefix, config.JSON[settings](key),
		config.WithValidate(settings.validate),
		config.WithOnReject[settings](func(r config.Rejection) {
			fmt.Printf("  service: rejected revision %d (%v); still serving the last good one\n", r.Revision, r.Err)
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()

	// The service: every request reads the current version. No restart, no
	// lock: Current is one atomic read.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		v := cfg.Current()
		msg := v.Value.Greeting
		if v.Value.Shout {
			msg = strings.ToUpper(msg) + "!"
		}
		fmt.Fprintf(w, "%s (settings of revision %d)", msg, v.Revision)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	url := "http://" + ln.Addr().String()
	get := func() { fmt.Printf("  GET / -> %s\n", fetch(ctx, url)) }

	updates := cfg.Updates(ctx)
	<-updates // the current version
	fmt.Println("The service starts with the settings in etcd:")
	get()

	fmt.Println("An operator changes them (compare-and-swap on the revision read):")
	changed := put(ctx, cli, key, `{"greeting": "good morning", "shout": true}`, first)
	waitFor(ctx, updates, changed)
	get()

	fmt.Println("A bad version: the service rejects it and keeps serving the last good one:")
	bad := put(ctx, cli, key, `{"greeting": ""}`, changed)
	for r, ok := cfg.Rejected(); !ok || r.Revision < bad; r, ok = cfg.Rejected() {
		time.Sleep(5 * time.Millisecond)
	}
	get()

	fmt.Println("The operator rolls the settings back to the version before the change:")
	fmt.Printf("  $ lockstep config rollback %s %d\n", *prefix, first)
	rolled, err := config.Rollback(ctx, cli, *prefix, first)
	if err != nil {
		log.Fatal(err)
	}
	waitFor(ctx, updates, rolled)
	get()

	fmt.Println("History of the prefix, newest first:")
	hist, err := config.History(ctx, cli, *prefix, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range hist {
		fmt.Printf("  revision %d: %s\n", e.Revision, e.Values["settings.json"])
	}
}

// put writes value as 'lockstep config put' would, guarded by ifRev unless
// it is negative, and prints that command line.
func put(ctx context.Context, cli *clientv3.Client, key, value string, ifRev int64) int64 {
	var opts []config.PutOption
	guard := ""
	if ifRev >= 0 {
		opts = append(opts, config.IfRevision(ifRev))
		guard = fmt.Sprintf("--if-revision %d ", ifRev)
	}
	fmt.Printf("  $ lockstep config put %s%s '%s'\n", guard, key, value)
	rev, err := config.Put(ctx, cli, key, value, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return rev
}

// waitFor waits until the service has taken the version at rev.
func waitFor(ctx context.Context, updates <-chan config.Version[settings], rev int64) {
	for {
		select {
		case v := <-updates:
			if v.Revision >= rev {
				return
			}
		case <-ctx.Done():
			log.Fatalf("revision %d was not taken: %v", rev, ctx.Err())
		}
	}
}

func fetch(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	return string(b)
}

func connect(ctx context.Context, endpoints string) (*clientv3.Client, func(), error) {
	if endpoints == "" {
		srv, err := embedded.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		cli, err := srv.Client()
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return cli, func() { srv.Close() }, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	return cli, func() { cli.Close() }, nil
}
