package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/config"
)

var configCommands = []command{
	{"get", "print a key's value, or every key of a prefix", runConfigGet},
	{"put", "write a key; with --if-revision, only if nobody wrote it since", runConfigPut},
	{"watch", "print each accepted version of a key or prefix as it changes", runConfigWatch},
	{"history", "print the earlier states of a prefix that etcd still holds", runConfigHistory},
	{"rollback", "write a prefix as it was at a revision, in one transaction", runConfigRollback},
}

func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "config", `
Configuration kept in etcd: one key holding a document (JSON, YAML, TOML)
or a prefix of keys. Services read it with lockstep's config package and
reload it live; these commands read and write it with the same rules.
Exit code 75 from put --if-revision and rollback means the key or prefix
was written meanwhile: read it again and retry.
`, configCommands, args, stdout, stderr)
}

// configClient connects for a config command.
func configClient(ctx context.Context, f *cmdFlags, conn *connFlags, stderr io.Writer) (*clientv3.Client, int, bool) {
	cli, err := conn.client(ctx)
	if err != nil {
		return nil, fail(ctx, stderr, f.name, err), false
	}
	return cli, 0, true
}

func runConfigGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("config get", "[flags] KEY", `
Prints the value of KEY. With --prefix, prints every key under KEY as
"key=value" lines, keys relative to the prefix. --revision prints the
revision of the last write before each value ("123 value"): the revision
put --if-revision takes.
`)
	var conn connFlags
	conn.register(f)
	prefix := f.Bool("prefix", false, "KEY is a prefix: print every key under it")
	withRev := f.Bool("revision", false, "print each value's revision first")
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return f.usageError(stderr, "want one KEY")
	}
	cli, code, ok := configClient(ctx, f, &conn, stderr)
	if !ok {
		return code
	}
	defer cli.Close()
	var opts []clientv3.OpOption
	if *prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	resp, err := cli.Get(ctx, pos[0], opts...)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	if !*prefix && len(resp.Kvs) == 0 {
		fmt.Fprintf(stderr, "lockstep config get: %s does not exist\n", pos[0])
		return exitError
	}
	for _, kv := range resp.Kvs {
		line := string(kv.Value)
		if *prefix {
			line = strings.TrimPrefix(string(kv.Key), pos[0]) + "=" + line
		}
		if *withRev {
			line = strconv.FormatInt(kv.ModRevision, 10) + " " + line
		}
		fmt.Fprintln(stdout, line)
	}
	return exitOK
}

func runConfigPut(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("config put", "[flags] KEY VALUE", `
Writes VALUE ("-" reads stdin) to KEY and prints the revision of the
write. With --if-revision REV it writes only if KEY was not written after
REV (a revision 'config get --revision' printed, or a version's): two
editors cannot overwrite each other's changes unseen. If it was, lockstep
exits 75 and writes nothing.

example:
  rev=$(lockstep config get --revision /config/app/config.json | cut -d' ' -f1)
  lockstep config put --if-revision "$rev" /config/app/config.json - < new.json
`)
	var conn connFlags
	conn.register(f)
	ifRev := f.Int64("if-revision", -1, "write only if KEY was not written after this revision")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	pos = append(pos, cmd...)
	if len(pos) != 2 || pos[0] == "" {
		return f.usageError(stderr, "want KEY and VALUE, got %d arguments", len(pos))
	}
	value := pos[1]
	if value == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fail(ctx, stderr, f.name, fmt.Errorf("read stdin: %w", err))
		}
		value = string(b)
	}
	var opts []config.PutOption
	if *ifRev >= 0 {
		opts = append(opts, config.IfRevision(*ifRev))
	}
	cli, code, ok := configClient(ctx, f, &conn, stderr)
	if !ok {
		return code
	}
	defer cli.Close()
	rev, err := config.Put(ctx, cli, pos[0], value, opts...)
	if errors.Is(err, config.ErrConflict) {
		fmt.Fprintf(stderr, "lockstep config put: %s\n", errText(err))
		return exitBusy
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, rev)
	return exitOK
}

func runConfigWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("config watch", "[flags] PREFIX [--validate CMD [ARG...]]", `
Follows the configuration under PREFIX and prints each accepted version as
"--- revision N" and its content: with --doc, the document KEY holds;
without, every key as "key=value" lines, relative to PREFIX. The first
version printed is the current one. It runs until SIGINT or SIGTERM.

With --validate, every version is CMD's stdin first; one CMD exits non-zero
for is rejected: lockstep prints "rejected revision N" to stderr and goes
on printing the last good version's successors, as a service using the
config package with a validator would.

example:
  lockstep config watch /config/app/ --doc /config/app/config.json --validate -- jq -e '.workers > 0'
`)
	var conn connFlags
	conn.register(f)
	key := f.String("doc", "", "print the document this key holds, not the whole prefix (etcdctl's --key is the TLS key)")
	validateFlag := f.Bool("validate", false, "run the command after -- on each version; reject it if it fails")
	pos, cmd, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return f.usageError(stderr, "want one PREFIX")
	}
	if *validateFlag != (len(cmd) > 0) {
		return f.usageError(stderr, "--validate needs a command after --, and a command needs --validate")
	}
	cli, code, ok := configClient(ctx, f, &conn, stderr)
	if !ok {
		return code
	}
	defer cli.Close()
	dec := config.DecoderFunc[string](func(s cache.Snapshot) (string, error) { return renderPrefix(s), nil })
	if *key != "" {
		k := *key
		dec = func(s cache.Snapshot) (string, error) {
			kv, ok := s.Get(k)
			if !ok {
				return "", fmt.Errorf("key %s does not exist", k)
			}
			return kv.Value, nil
		}
	}
	opts := []config.Option[string]{config.WithOnReject[string](func(r config.Rejection) {
		fmt.Fprintf(stderr, "lockstep config watch: rejected revision %d: %s\n", r.Revision, errText(r.Err))
	})}
	if len(cmd) > 0 {
		opts = append(opts, config.WithValidate(func(v string) error { return runValidator(ctx, cmd, v) }))
	}
	cfg, err := config.Open(ctx, cli, pos[0], dec, opts...)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cfg.Close()
	for v := range cfg.Updates(ctx) {
		fmt.Fprintf(stdout, "--- revision %d\n%s", v.Revision, withNewline(v.Value))
	}
	if ctx.Err() != nil {
		return exitOK
	}
	return fail(ctx, stderr, f.name, cfg.Err())
}

// renderPrefix renders a snapshot as "key=value" lines, keys relative to
// its prefix.
func renderPrefix(s cache.Snapshot) string {
	var b strings.Builder
	for k, kv := range s.All() {
		fmt.Fprintf(&b, "%s=%s\n", strings.TrimPrefix(k, s.Prefix()), kv.Value)
	}
	return b.String()
}

func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// runValidator runs cmd with v on its stdin; it fails if cmd does.
func runValidator(ctx context.Context, cmd []string, v string) error {
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Stdin = strings.NewReader(v)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%s: %w: %s", cmd[0], err, msg)
		}
		return fmt.Errorf("%s: %w", cmd[0], err)
	}
	return nil
}

func runConfigHistory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("config history", "[flags] PREFIX", `
Prints the newest -n states of PREFIX that etcd's history still holds,
newest first, each as "--- revision N" and "key=value" lines. History goes
back only to etcd's last compaction.
`)
	var conn connFlags
	conn.register(f)
	n := f.Int("n", 10, "how many states to print")
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return f.usageError(stderr, "want one PREFIX")
	}
	if *n < 1 {
		return f.usageError(stderr, "-n %d: want at least 1", *n)
	}
	cli, code, ok := configClient(ctx, f, &conn, stderr)
	if !ok {
		return code
	}
	defer cli.Close()
	hist, err := config.History(ctx, cli, pos[0], *n)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	for _, e := range hist {
		fmt.Fprintf(stdout, "--- revision %d\n", e.Revision)
		keys := make([]string, 0, len(e.Values))
		for k := range e.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "%s=%s\n", k, e.Values[k])
		}
	}
	return exitOK
}

func runConfigRollback(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("config rollback", "[flags] PREFIX REVISION", `
Writes PREFIX as it was at REVISION, in one transaction: keys get their
values of then, keys added since are deleted. Prints the revision of the
write. If the prefix changes meanwhile nothing is written and lockstep
exits 75; a REVISION etcd has compacted away is an error (exit 1).
`)
	var conn connFlags
	conn.register(f)
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 2 || pos[0] == "" {
		return f.usageError(stderr, "want PREFIX and REVISION")
	}
	rev, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil || rev < 1 {
		return f.usageError(stderr, "REVISION %q: want a positive number", pos[1])
	}
	cli, code, ok := configClient(ctx, f, &conn, stderr)
	if !ok {
		return code
	}
	defer cli.Close()
	wrote, err := config.Rollback(ctx, cli, pos[0], rev)
	if errors.Is(err, config.ErrConflict) {
		fmt.Fprintf(stderr, "lockstep config rollback: %s\n", errText(err))
		return exitBusy
	}
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	fmt.Fprintln(stdout, wrote)
	return exitOK
}
