package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/lockstep-go/lockstep/mutex"
)

const lockAbout = `
Runs CMD while holding the lock NAME, then releases it. Waiters are served
first come, first served. The lock is etcd's: 'etcdctl lock NAME' and
concurrency.Mutex on the same NAME exclude and are excluded by it.

CMD gets LOCKSTEP_TOKEN, the fencing token (strictly increasing from one
holder to the next: hand it to what CMD writes to, which should refuse a
token lower than the highest it has seen), LOCKSTEP_KEY (the lock's key),
LOCKSTEP_NAME, LOCKSTEP_LEASE, LOCKSTEP_ENDPOINTS, and etcdctl's
ETCD_LOCK_KEY and ETCD_LOCK_REV (here: the token, the key's create
revision).

If the lock is lost while CMD runs (the session cannot renew its lease, the
key is deleted, the lease is revoked), CMD's process group gets SIGTERM,
then SIGKILL after --grace, and lockstep exits 76. Otherwise lockstep exits
with CMD's code. With --try, a lock held or waited for by another exits 75
at once.

Without CMD, lockstep prints LOCKSTEP_KEY=... and LOCKSTEP_TOKEN=... lines
and holds the lock until SIGINT or SIGTERM (exit 0), or until it is lost
(exit 76).

examples:
  lockstep lock /locks/nightly-report -- ./report.sh
  lockstep lock --try /locks/backup -- ./backup.sh; [ $? -eq 75 ] && echo "a backup is already running"
`

func runLock(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("lock", "[flags] NAME [-- CMD [ARG...]]", lockAbout)
	var conn connFlags
	conn.registerSession(f)
	try := f.Bool("try", false, "exit 75 at once if another holds or waits for the lock")
	var wait waitFlags
	wait.register(f, "waiting for the lock")
	var hf holdFlags
	hf.register(f)
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return f.usageError(stderr, "want one NAME, got %d arguments", len(pos))
	}
	name := pos[0]
	if err := checkName(name); err != nil {
		return f.usageError(stderr, "%v", err)
	}

	cli, s, err := conn.session(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	defer s.Close()
	m, err := mutex.New(s, name)
	if err != nil {
		return f.usageError(stderr, "%v", err)
	}

	var l *mutex.Lock
	if *try {
		l, err = m.TryLock(ctx)
		if errors.Is(err, mutex.ErrLocked) {
			fmt.Fprintf(stderr, "lockstep lock: %s is busy%s\n", name, holderOf(ctx, m))
			return exitBusy
		}
	} else {
		wctx, cancel := wait.context(ctx)
		l, err = m.Lock(wctx)
		cancel()
		if wait.timedOut(ctx, err) {
			fmt.Fprintf(stderr, "lockstep lock: %s still busy after %v%s\n", name, wait.timeout, holderOf(ctx, m))
			return exitBusy
		}
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}

	env := append(ownershipEnv(name, l, s),
		"ETCD_LOCK_KEY="+l.Key(),
		"ETCD_LOCK_REV="+strconv.FormatInt(l.Token(), 10))
	h := holding{cmd: f.name, what: "lock " + name, own: l, release: l.Unlock, env: append(env, conn.env()...)}
	return h.run(ctx, cmd, hf.grace, stdout, stderr)
}

// holderOf describes who holds m, for a busy message.
func holderOf(ctx context.Context, m *mutex.Mutex) string {
	h, err := m.Holder(ctx)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(": held by lease %x (token %d)", int64(h.Lease), h.Token)
}
