package rbac_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/config"
	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/leaderjob"
	"github.com/lockstep-go/lockstep/mutex"
	"github.com/lockstep-go/lockstep/queue"
	"github.com/lockstep-go/lockstep/semaphore"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// secured is an etcd with TLS and authentication and its root client.
type secured struct {
	srv  *embedded.Server
	root *clientv3.Client
}

// user is a client of a user whose one role may read and write [key, end)
// and nothing else, with its calls counted.
type user struct {
	cli  *clientv3.Client
	rpcs *testutil.RPCCounter
}

func start(t *testing.T, opts ...embedded.Option) *secured {
	t.Helper()
	ctx := testutil.Context(t, time.Minute)
	srv, err := embedded.Start(ctx, append([]embedded.Option{embedded.WithoutFsync(), embedded.WithTLS(), embedded.WithAuth("root-pw")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &secured{srv: srv, root: testutil.ClientWith(t, srv.ClientConfig())}
}

// grant is one permission of a role: on [key, end), the key alone if end
// is empty.
type grant struct {
	key, end string
	perm     clientv3.PermissionType
}

// readWrite is read and write under dir.
func readWrite(dir string) grant {
	return grant{dir, clientv3.GetPrefixRangeEnd(dir), clientv3.PermissionType(clientv3.PermReadWrite)}
}

// user creates the user name with a role of the same name that has grants
// and nothing else, and a client of it.
func (e *secured) user(t *testing.T, name string, grants ...grant) *user {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	steps := []func() error{
		func() error { _, err := e.root.RoleAdd(ctx, name); return err },
		func() error { _, err := e.root.UserAdd(ctx, name, name+"-pw"); return err },
		func() error { _, err := e.root.UserGrantRole(ctx, name, name); return err },
	}
	for _, g := range grants {
		steps = append(steps, func() error { _, err := e.root.RoleGrantPermission(ctx, name, g.key, g.end, g.perm); return err })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.srv.ClientConfig()
	cfg.Username, cfg.Password = name, name+"-pw"
	rpcs := testutil.NewRPCCounter()
	rpcs.Count(&cfg)
	return &user{cli: testutil.ClientWith(t, cfg), rpcs: rpcs}
}

func (u *user) session(t *testing.T) *lockstep.Session {
	t.Helper()
	s, err := lockstep.NewSession(testutil.Context(t, 10*time.Second), u.cli)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// leftUnder returns the keys under prefix, read as root.
func (e *secured) leftUnder(t *testing.T, prefix string) int64 {
	t.Helper()
	resp, err := e.root.Get(testutil.Context(t, 10*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// use is one recipe used on one prefix by a user.
type use func(ctx context.Context, t *testing.T, u *user, prefix string) error

// recipes are used on a name, by a user whose role covers exactly what
// docs/security.md says the recipe needs for that name.
var recipes = []struct {
	name  string
	needs func(prefix string) []grant
	use   use
}{
	{"mutex", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		m, err := mutex.New(u.session(t), prefix)
		if err != nil {
			return err
		}
		l, err := m.Lock(ctx)
		if err != nil {
			return err
		}
		return l.Unlock(ctx)
	}},
	{"semaphore", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		sem, err := semaphore.New(u.session(t), prefix, 2)
		if err != nil {
			return err
		}
		p, err := sem.Acquire(ctx)
		if err != nil {
			return err
		}
		return p.Release(ctx)
	}},
	{"election", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		el, err := election.New(u.session(t), prefix)
		if err != nil {
			return err
		}
		term, err := el.Campaign(ctx, "me")
		if err != nil {
			return err
		}
		return term.Resign(ctx)
	}},
	{"leaderjob", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		r, err := leaderjob.New(u.cli, prefix, func(context.Context, *election.Term) error { return nil }, leaderjob.WithPolicy(leaderjob.StopWhenDone))
		if err != nil {
			return err
		}
		return r.Run(ctx)
	}},
	{"barrier", func(p string) []grant {
		return []grant{{p + "/gate", "", clientv3.PermissionType(clientv3.PermReadWrite)}}
	}, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		b, err := barrier.New(u.cli, prefix+"/gate", barrier.WithSession(u.session(t)))
		if err != nil {
			return err
		}
		h, err := b.Hold(ctx)
		if err != nil {
			return err
		}
		return h.Release(ctx)
	}},
	{"double barrier", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		d, err := barrier.NewDouble(u.session(t), prefix, 1)
		if err != nil {
			return err
		}
		if err := d.Enter(ctx); err != nil {
			return err
		}
		return d.Leave(ctx)
	}},
	{"queue", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		q, err := queue.New(u.session(t), prefix)
		if err != nil {
			return err
		}
		if _, err := q.Enqueue(ctx, "job"); err != nil {
			return err
		}
		it, err := q.Dequeue(ctx)
		if err != nil {
			return err
		}
		return it.Ack(ctx)
	}},
	{"cache", func(p string) []grant { return []grant{readWrite(p)} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		c, err := cache.Open(ctx, u.cli, prefix)
		if err != nil {
			return err
		}
		return c.Close()
	}},
	{"config", func(p string) []grant { return []grant{readWrite(p + "/")} }, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		if _, err := config.Put(ctx, u.cli, prefix+"/app.json", `{"n": 1}`); err != nil {
			return err
		}
		c, err := config.Open(ctx, u.cli, prefix+"/", config.JSON[struct{ N int }](prefix+"/app.json"))
		if err != nil {
			return err
		}
		return c.Close()
	}},
	{"discovery", func(p string) []grant {
		read := readWrite(p + "/")
		read.perm = clientv3.PermissionType(clientv3.PermRead)
		return []grant{readWrite(p + "/web/"), read}
	}, func(ctx context.Context, t *testing.T, u *user, prefix string) error {
		r, err := discovery.Register(ctx, u.cli, prefix, discovery.Instance{Service: "web", ID: "a", Addr: "127.0.0.1:8080"})
		if err != nil {
			return err
		}
		defer r.Close(ctx)
		w, err := discovery.Watch(ctx, u.cli, prefix, "web")
		if err != nil {
			return err
		}
		return w.Close()
	}},
}

// Each recipe works with the permissions docs/security.md lists for its
// name, and on another name fails with etcd's permission error without
// waiting out its ctx, after at most three requests, and leaves nothing
// there.
func TestEveryRecipeInsideAndOutsideItsPrefix(t *testing.T) {
	e := start(t)
	for i, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			mine := fmt.Sprintf("/app/%d", i)
			u := e.user(t, fmt.Sprintf("user%d", i), r.needs(mine)...)
			if err := r.use(ctx, t, u, mine); err != nil {
				t.Fatalf("with the permissions it needs: %v", err)
			}
			outside := fmt.Sprintf("/other/%d", i)
			u.rpcs.Reset()
			err := r.use(ctx, t, u, outside)
			if !errors.Is(err, rpctypes.ErrPermissionDenied) {
				t.Fatalf("outside /app/: %v, want etcd's permission denied", err)
			}
			if ctx.Err() != nil {
				t.Fatal("the refused call waited out its ctx")
			}
			if n := u.rpcs.KV(); n > 3 {
				t.Errorf("%d requests before giving up: a retry loop", n)
			}
			if n := e.leftUnder(t, outside); n != 0 {
				t.Errorf("%d keys left under %s", n, outside)
			}
		})
	}
}

// A token that expired is replaced: the client logs in again and the
// recipes go on.
func TestExpiredTokenIsRenewed(t *testing.T) {
	e := start(t, embedded.WithConfig(func(c *embed.Config) { c.AuthTokenTTL = 1 }))
	ctx := testutil.Context(t, 30*time.Second)
	u := e.user(t, "app", readWrite("/app/renew/"))
	m, err := mutex.New(u.session(t), "/app/renew")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l, err := m.Lock(ctx)
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		time.Sleep(1500 * time.Millisecond) // past the token's TTL
	}
	if n := u.rpcs.Calls("Authenticate"); n < 2 {
		t.Fatalf("the client logged in %d times: the token never expired, the test proves nothing", n)
	}
}
