package config_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/config"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

type appConfig struct {
	Greeting string `json:"greeting" yaml:"greeting" toml:"greeting"`
	Workers  int    `json:"workers" yaml:"workers" toml:"workers"`
}

func validate(c appConfig) error {
	if c.Workers < 1 {
		return fmt.Errorf("workers %d: want at least 1", c.Workers)
	}
	return nil
}

func mustPut(t *testing.T, ctx context.Context, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	rev, err := config.Put(ctx, cli, key, value)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// waitFor reads updates until one satisfies ok.
func waitFor[T any](t *testing.T, ctx context.Context, ch <-chan config.Version[T], ok func(config.Version[T]) bool) config.Version[T] {
	t.Helper()
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatal("updates closed")
			}
			if ok(v) {
				return v
			}
		case <-ctx.Done():
			t.Fatal("the version did not come")
		}
	}
}

func TestDecoders(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	for _, tc := range []struct {
		name string
		dec  func(key string) config.Decoder[appConfig]
		doc  string
	}{
		{"JSON", config.JSON[appConfig], `{"greeting": "hello", "workers": 3}`},
		{"YAML", config.YAML[appConfig], "greeting: hello\nworkers: 3\n"},
		{"TOML", config.TOML[appConfig], "greeting = \"hello\"\nworkers = 3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := testutil.Prefix(t) + "/"
			key := prefix + "app"
			rev := mustPut(t, ctx, cli, key, tc.doc)
			cfg, err := config.Open(ctx, cli, prefix, tc.dec(key), config.WithValidate(validate))
			if err != nil {
				t.Fatal(err)
			}
			defer cfg.Close()
			if v := cfg.Current(); v.Value != (appConfig{"hello", 3}) || v.Revision < rev {
				t.Fatalf("Current: %+v, want hello/3 at %d or later", v, rev)
			}
		})
	}
}

// A bad version is rejected and the last good one stays; the next good one
// is taken; a deleted key is gone from the next version.
func TestHotReload(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	key := prefix + "app.json"
	mustPut(t, ctx, cli, key, `{"greeting": "hello", "workers": 1}`)
	cfg, err := config.Open(ctx, cli, prefix, config.JSON[appConfig](key), config.WithValidate(validate))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	updates := cfg.Updates(ctx)
	first := waitFor(t, ctx, updates, func(config.Version[appConfig]) bool { return true })
	if first != cfg.Current() {
		t.Fatalf("first update %+v is not Current %+v", first, cfg.Current())
	}

	mustPut(t, ctx, cli, key, `{"greeting": "hi", "workers": 2}`)
	good := waitFor(t, ctx, updates, func(v config.Version[appConfig]) bool { return v.Value.Greeting == "hi" })

	for _, bad := range []struct {
		doc  string
		want error
	}{
		{`{"greeting": "hey", "workers": 0}`, config.ErrInvalid},
		{`{"greeting": `, config.ErrDecode},
	} {
		rev := mustPut(t, ctx, cli, key, bad.doc)
		for {
			if r, ok := cfg.Rejected(); ok && r.Revision >= rev {
				if !errors.Is(r.Err, bad.want) {
					t.Fatalf("Rejected: %v, want %v", r.Err, bad.want)
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the version at %d was not rejected", rev)
			case <-time.After(5 * time.Millisecond):
			}
		}
		if cfg.Current() != good {
			t.Fatalf("Current after a bad version: %+v, want the last good %+v", cfg.Current(), good)
		}
	}
	select {
	case v := <-updates:
		t.Fatalf("a rejected version was delivered: %+v", v)
	default:
	}

	mustPut(t, ctx, cli, key, `{"greeting": "back", "workers": 4}`)
	waitFor(t, ctx, updates, func(v config.Version[appConfig]) bool { return v.Value.Greeting == "back" })
	if _, ok := cfg.Rejected(); ok {
		t.Fatal("Rejected still reports a version older than Current")
	}
	// A key the configuration does not read is no new version.
	mustPut(t, ctx, cli, prefix+"other", "x")
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	for {
		if r, ok := cfg.Rejected(); ok && errors.Is(r.Err, config.ErrDecode) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("deleting the key was not rejected")
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case v := <-updates:
		t.Fatalf("unexpected version: %+v", v)
	default:
	}
}

// Map decodes the whole prefix at one revision; a deleted key is gone from
// the next version (no merge with the previous one).
func TestMapIsOneRevisionAndForgetsDeletedKeys(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	mustPut(t, ctx, cli, prefix+"db/host", "a")
	mustPut(t, ctx, cli, prefix+"db/port", "1")
	cfg, err := config.Open(ctx, cli, prefix, config.Map())
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if got := fmt.Sprint(cfg.Current().Value); got != "map[db/host:a db/port:1]" {
		t.Fatalf("Current: %s", got)
	}
	updates := cfg.Updates(ctx)
	// Both keys change in one transaction: no version has one without the
	// other.
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut(prefix+"db/host", "b"), clientv3.OpPut(prefix+"db/port", "2")).Commit(); err != nil {
		t.Fatal(err)
	}
	v := waitFor(t, ctx, updates, func(v config.Version[map[string]string]) bool { return v.Value["db/host"] != "a" })
	if got := fmt.Sprint(v.Value); got != "map[db/host:b db/port:2]" {
		t.Fatalf("version after a two-key write: %s", got)
	}
	if _, err := cli.Delete(ctx, prefix+"db/port"); err != nil {
		t.Fatal(err)
	}
	v = waitFor(t, ctx, updates, func(v config.Version[map[string]string]) bool { return len(v.Value) == 1 })
	if got := fmt.Sprint(v.Value); got != "map[db/host:b]" {
		t.Fatalf("version after a delete: %s", got)
	}
}

// A slow consumer of Updates sees the newest version, not a backlog.
func TestUpdatesGivesTheNewest(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	key := prefix + "n"
	mustPut(t, ctx, cli, key, "0")
	cfg, err := config.Open(ctx, cli, prefix, config.JSON[int](key))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	updates := cfg.Updates(ctx)
	var last int64
	for i := 1; i <= 20; i++ {
		last = mustPut(t, ctx, cli, key, fmt.Sprint(i))
	}
	for cfg.Current().Revision < last {
		time.Sleep(5 * time.Millisecond)
	}
	if v := <-updates; v.Value != 20 {
		t.Fatalf("a slow consumer's next version: %+v, want the newest (20)", v)
	}
	select {
	case v := <-updates:
		t.Fatalf("a backlog: %+v", v)
	default:
	}
}

func TestOpenFailsOnABadFirstVersion(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	key := prefix + "app.json"
	if _, err := config.Open(ctx, cli, prefix, config.JSON[appConfig](key)); !errors.Is(err, config.ErrDecode) {
		t.Fatalf("Open of a missing key: got %v, want ErrDecode", err)
	}
	mustPut(t, ctx, cli, key, `{"workers": 0}`)
	if _, err := config.Open(ctx, cli, prefix, config.JSON[appConfig](key), config.WithValidate(validate)); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Open of an invalid version: got %v, want ErrInvalid", err)
	}
	if _, err := config.Open[appConfig](ctx, cli, prefix, nil); !errors.Is(err, config.ErrInvalidArgument) {
		t.Fatalf("Open with a nil decoder: got %v, want ErrInvalidArgument", err)
	}
	// A user decoder sees the snapshot.
	cfg, err := config.Open(ctx, cli, prefix, config.DecoderFunc[int](func(s cache.Snapshot) (int, error) { return s.Len(), nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if cfg.Current().Value != 1 {
		t.Fatalf("user decoder: %d keys, want 1", cfg.Current().Value)
	}
}

// Updates channels close with their ctx and with Close.
func TestUpdatesClose(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	cfg, err := config.Open(ctx, cli, prefix, config.Map())
	if err != nil {
		t.Fatal(err)
	}
	uctx, cancel := context.WithCancel(ctx)
	byCtx := cfg.Updates(uctx)
	byClose := cfg.Updates(ctx)
	cancel()
	for range byCtx {
	}
	cfg.Close()
	for range byClose {
	}
	if !errors.Is(cfg.Err(), config.ErrClosed) {
		t.Fatalf("Err after Close: %v", cfg.Err())
	}
	if _, ok := <-cfg.Updates(ctx); ok {
		t.Fatal("Updates after Close delivered a version")
	}
}
