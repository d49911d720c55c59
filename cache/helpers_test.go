package cache_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func open(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, opts ...cache.Option) *cache.Cache {
	t.Helper()
	c, err := cache.Open(ctx, cli, prefix, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", prefix, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next update on ch, failing the test if ctx ends or ch
// closes first.
func next(t *testing.T, ctx context.Context, ch <-chan cache.Update) cache.Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("the subscription closed")
		}
		return u
	case <-ctx.Done():
		t.Fatal("no update came")
		return cache.Update{}
	}
}

// state renders a snapshot as "key=value" lines in key order.
func state(s cache.Snapshot) string {
	var b strings.Builder
	for k, kv := range s.All() {
		fmt.Fprintf(&b, "%s=%s\n", k, kv.Value)
	}
	return b.String()
}

// etcdState renders a fresh linearizable read of the prefix like state.
func etcdState(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) (string, int64) {
	t.Helper()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		lines = append(lines, fmt.Sprintf("%s=%s\n", kv.Key, kv.Value))
	}
	sort.Strings(lines)
	return strings.Join(lines, ""), resp.Header.Revision
}

// mirror applies updates to a map, as a subscriber that keeps its own copy
// would, and checks that each update's snapshot is what they lead to.
type mirror struct {
	kv  map[string]string
	rev int64
}

func (m *mirror) apply(t *testing.T, u cache.Update) {
	t.Helper()
	if err := m.take(u); err != nil {
		t.Fatal(err)
	}
}

// take applies u and says what is wrong with it, if anything.
func (m *mirror) take(u cache.Update) error {
	if u.Kind == cache.Whole {
		m.kv = map[string]string{}
		for k, kv := range u.Snapshot.All() {
			m.kv[k] = kv.Value
		}
	} else {
		for _, c := range u.Changes {
			if c.Type == cache.Delete {
				delete(m.kv, c.Key)
			} else {
				m.kv[c.Key] = c.Value
			}
		}
	}
	if u.Revision() < m.rev {
		return fmt.Errorf("revision went back from %d to %d", m.rev, u.Revision())
	}
	m.rev = u.Revision()
	if got, want := m.render(), state(u.Snapshot); got != want {
		return fmt.Errorf("changes do not lead to the update's snapshot at %d:\napplied:\n%s\nsnapshot:\n%s", u.Revision(), got, want)
	}
	return nil
}

func (m *mirror) render() string {
	lines := make([]string, 0, len(m.kv))
	for k, v := range m.kv {
		lines = append(lines, k+"="+v+"\n")
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

func put(t *testing.T, ctx context.Context, cli *clientv3.Client, k, v string) int64 {
	t.Helper()
	resp, err := cli.Put(ctx, k, v)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func ctxFor(t *testing.T) context.Context { return testutil.Context(t, 30*time.Second) }
