package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/discovery"
)

const statusAbout = `
Reads the keys under PREFIX (default: all of them) once and shows, for each
lock, election, semaphore, queue, double barrier, gate and service it
recognises by its key layout, who holds, leads and waits, how deep the
queues are, and which instances serve or drain.

What it cannot tell:
  - who a holder is beyond its lease: lock and semaphore keys hold no name
    (an election's holds the candidate's --id);
  - a lock from an election whose candidates campaigned with empty values
    (the two share etcd's layout; such an election shows as a lock);
  - a gate closed by 'etcdctl put' rather than 'barrier hold': a gate is
    any key, recognised by the value lockstep writes; it shows under
    "other keys";
  - anything that changed after the read: this is one snapshot.
TTL is what is left of the holder's lease; a live holder renews it, a dead
one's runs out.
`

// statusMaxLeases bounds the lease lookups, one round trip each.
const statusMaxLeases = 200

// statusMaxValueReads bounds the values read of keys whose name says
// nothing, to tell gates and service instances: they could be any
// application's data, of any size.
const statusMaxValueReads = 200

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newFlags("status", "[flags] [PREFIX]", statusAbout)
	var conn connFlags
	conn.register(f)
	maxKeys := f.Int64("max-keys", 10000, "read at most this many keys")
	pos, _, code, ok := f.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return f.usageError(stderr, "want at most one PREFIX, got %d arguments", len(pos))
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	cli, err := conn.client(ctx)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	defer cli.Close()
	st, err := readStatus(ctx, cli, prefix, *maxKeys)
	if err != nil {
		return fail(ctx, stderr, f.name, err)
	}
	st.print(stdout)
	return exitOK
}

// Key layouts, from the packages' documentation. <lease> is the lease ID in
// hex; the checks below also require it to be the key's own lease.
var (
	queueRe    = regexp.MustCompile(`^(.+)/(items|claims)/([0-9a-f]{8})/([0-9a-f]{24})$`) // P/items/<prio>/<seq>
	waiterRe   = regexp.MustCompile(`^(.+)/(waiters|sessions)/([0-9a-f]+)(-[0-9a-f]{8})?$`)
	readyRe    = regexp.MustCompile(`^(.+)/ready$`)
	partyRe    = regexp.MustCompile(`^(.+)/parties/([0-9a-f]+)-[0-9]+(\.watch)?$`)
	permitRe   = regexp.MustCompile(`^(.+)/([0-9a-f]+)-[0-9a-f]{16}$`) // semaphore: P/<lease>-<random>
	leaseKeyRe = regexp.MustCompile(`^(.+)/([0-9a-f]+)$`)              // mutex, election: P/<lease>
)

type groupKind int

const (
	kindLock groupKind = iota // or an election without values: see statusAbout
	kindElection
	kindSemaphore
	kindQueue
	kindBarrier
	kindGate
	kindService
)

func (k groupKind) String() string {
	return [...]string{"lock", "election", "semaphore", "queue", "barrier", "gate", "service"}[k]
}

// group is one recognised primitive: the keys under its name.
type group struct {
	kind groupKind
	name string
	kvs  []*mvccpb.KeyValue
}

// status is one read of the keys under a prefix.
type status struct {
	prefix    string
	rev       int64
	truncated bool
	groups    []*group
	other     int               // keys not recognised
	ttl       map[int64]int64   // lease -> seconds left; -1 gone
	values    map[string][]byte // key -> value, for groups whose values matter
	items     map[string]int64  // queue item key -> version, for claims' attempts
	instances map[string]discovery.Instance
}

func readStatus(ctx context.Context, cli *clientv3.Client, prefix string, maxKeys int64) (*status, error) {
	// Key shapes first, from a keys-only read. Leases and values need a
	// second read, which skips queue items: their values can be large and
	// say nothing here. Both reads are at the same revision.
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(maxKeys))
	if err != nil {
		return nil, err
	}
	st := &status{prefix: prefix, rev: resp.Header.Revision, truncated: resp.More,
		ttl: map[int64]int64{}, values: map[string][]byte{}, items: map[string]int64{},
		instances: map[string]discovery.Instance{}}
	byName := map[[2]string]*group{}
	add := func(kind groupKind, name string, kv *mvccpb.KeyValue) {
		k := [2]string{kind.String(), name}
		g := byName[k]
		if g == nil {
			g = &group{kind: kind, name: name}
			byName[k] = g
			st.groups = append(st.groups, g)
		}
		g.kvs = append(g.kvs, kv)
	}
	shapes := map[string]shape{}
	var full []string
	valueReads := 0
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		sh, ok := shapeOf(key)
		switch {
		case !ok && (kv.Version == 1 || kv.Lease != 0) && valueReads < statusMaxValueReads:
			// A gate is any key, written once; a service instance, a
			// leased key (or one etcd naming wrote once): values tell.
			valueReads++
			shapes[key] = shape{kind: kindGate}
			full = append(full, key)
		case !ok:
			st.other++
		case sh.item:
			st.items[key] = kv.Version
			add(sh.kind, sh.name, kv)
		default:
			shapes[key] = sh
			full = append(full, key)
		}
	}
	kvs, err := readKeys(ctx, cli, full, st.rev)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		sh := shapes[string(kv.Key)]
		if sh.kind == kindGate || !sh.fits(kv) {
			if isGate(kv) {
				add(kindGate, string(kv.Key), kv)
			} else if in, ok := discovery.ParseInstance(string(kv.Key), kv.Value); ok {
				st.instances[string(kv.Key)] = in
				add(kindService, path.Dir(string(kv.Key)), kv)
			} else {
				st.other++
			}
			continue
		}
		st.values[string(kv.Key)] = kv.Value
		add(sh.kind, sh.name, kv)
	}
	for _, g := range st.groups {
		if g.kind == kindLock && slices.ContainsFunc(g.kvs, func(kv *mvccpb.KeyValue) bool { return len(kv.Value) > 0 }) {
			g.kind = kindElection
		}
		for _, kv := range g.kvs {
			if _, ok := st.ttl[kv.Lease]; !ok && kv.Lease != 0 && len(st.ttl) < statusMaxLeases {
				st.ttl[kv.Lease] = leaseTTL(ctx, cli, kv.Lease)
			}
		}
	}
	return st, nil
}

// shape is what a key's name says about it.
type shape struct {
	kind   groupKind
	name   string
	item   bool   // a queue item: no lease, value not read
	leased bool   // the key must have a lease
	lease  string // the lease the key must have, in hex; "" for any
}

// fits checks what the name promised against the key as read.
func (sh shape) fits(kv *mvccpb.KeyValue) bool {
	if sh.leased != (kv.Lease != 0) {
		return false
	}
	return sh.lease == "" || sh.lease == fmt.Sprintf("%x", kv.Lease)
}

// shapeOf says which primitive's layout a key's name belongs to.
func shapeOf(key string) (shape, bool) {
	if m := queueRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindQueue, name: m[1], item: m[2] == "items", leased: m[2] == "claims"}, true
	}
	if m := waiterRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindQueue, name: m[1], leased: true, lease: m[3]}, true
	}
	if m := readyRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindBarrier, name: m[1]}, true
	}
	if m := partyRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindBarrier, name: m[1], leased: true}, true
	}
	if m := permitRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindSemaphore, name: m[1], leased: true, lease: m[2]}, true
	}
	if m := leaseKeyRe.FindStringSubmatch(key); m != nil {
		return shape{kind: kindLock, name: m[1], leased: true, lease: m[2]}, true
	}
	return shape{}, false
}

// gateValueRe is the value barrier.Hold writes: its lease in hex, a dash,
// a random nonce.
var gateValueRe = regexp.MustCompile(`^([0-9a-f]+)-[0-9a-f]{16}$`)

// isGate says whether kv is a gate that lockstep closed: written once,
// with the value Hold writes, naming the key's own lease (0 for none).
func isGate(kv *mvccpb.KeyValue) bool {
	m := gateValueRe.FindSubmatch(kv.Value)
	return kv.Version == 1 && m != nil && string(m[1]) == strconv.FormatInt(kv.Lease, 16)
}

// readKeys reads keys in full at rev, 100 to a transaction (etcd allows
// 128 operations in one).
func readKeys(ctx context.Context, cli *clientv3.Client, keys []string, rev int64) ([]*mvccpb.KeyValue, error) {
	var kvs []*mvccpb.KeyValue
	for len(keys) > 0 {
		n := min(len(keys), 100)
		ops := make([]clientv3.Op, n)
		for i, k := range keys[:n] {
			ops[i] = clientv3.OpGet(k, clientv3.WithRev(rev))
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		for _, r := range resp.Responses {
			kvs = append(kvs, r.GetResponseRange().Kvs...)
		}
		keys = keys[n:]
	}
	return kvs, nil
}

func leaseTTL(ctx context.Context, cli *clientv3.Client, lease int64) int64 {
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		return -2
	}
	return resp.TTL
}

// row is one line of the table.
type row struct {
	kind, name, role string
	lease            int64
	token            int64
	detail           string
}

func (st *status) rows() []row {
	slices.SortFunc(st.groups, func(a, b *group) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return int(a.kind) - int(b.kind)
	})
	var rows []row
	for _, g := range st.groups {
		switch g.kind {
		case kindLock, kindElection:
			rows = append(rows, st.lockRows(g)...)
		case kindSemaphore:
			rows = append(rows, st.semRows(g)...)
		case kindQueue:
			rows = append(rows, st.queueRows(g)...)
		case kindBarrier:
			rows = append(rows, st.barrierRows(g)...)
		case kindGate:
			rows = append(rows, st.gateRows(g)...)
		case kindService:
			rows = append(rows, st.serviceRows(g)...)
		}
	}
	return rows
}

func byCreateRevision(kvs []*mvccpb.KeyValue) []*mvccpb.KeyValue {
	kvs = slices.Clone(kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return int(a.CreateRevision - b.CreateRevision) })
	return kvs
}

// lockRows: the oldest key holds (leads); the others wait in line.
func (st *status) lockRows(g *group) []row {
	var rows []row
	holder, waiter := "holder", "waiting"
	if g.kind == kindElection {
		holder, waiter = "leader", "candidate"
	}
	for i, kv := range byCreateRevision(g.kvs) {
		r := row{kind: g.kind.String(), name: g.name, role: holder, lease: kv.Lease, token: kv.CreateRevision}
		if i > 0 {
			r.role = waiter
			r.detail = fmt.Sprintf("#%d in line", i)
		}
		if g.kind == kindElection {
			r.detail = strings.TrimSpace(fmt.Sprintf("%q %s", st.values[string(kv.Key)], r.detail))
		}
		rows = append(rows, r)
	}
	return rows
}

// semRows: the limit oldest keys hold a permit; the others wait.
func (st *status) semRows(g *group) []row {
	kvs := byCreateRevision(g.kvs)
	limit, agreed := 0, true
	for _, kv := range kvs {
		n, err := strconv.Atoi(string(st.values[string(kv.Key)]))
		if limit == 0 {
			limit = n
		}
		agreed = agreed && err == nil && n == limit
	}
	var rows []row
	for i, kv := range kvs {
		r := row{kind: "semaphore", name: g.name, role: "holder", lease: kv.Lease, token: kv.CreateRevision,
			detail: fmt.Sprintf("permit %d of %d", i+1, limit)}
		if i >= limit {
			r.role, r.detail = "waiting", fmt.Sprintf("#%d in line", i-limit+1)
		}
		if !agreed {
			r.detail = "limits disagree: " + string(st.values[string(kv.Key)])
		}
		rows = append(rows, r)
	}
	return rows
}

// queueRows: a summary, then one row per item being worked on.
func (st *status) queueRows(g *group) []row {
	var items, waiters int
	var claims []*mvccpb.KeyValue
	for _, kv := range g.kvs {
		switch strings.Split(strings.TrimPrefix(string(kv.Key), g.name+"/"), "/")[0] {
		case "items":
			items++
		case "claims":
			claims = append(claims, kv)
		case "waiters":
			waiters++
		}
	}
	rows := []row{{kind: "queue", name: g.name, role: "depth",
		detail: fmt.Sprintf("%s, %d being worked on; %s waiting", plural(items, "item"), len(claims), plural(waiters, "consumer"))}}
	for _, kv := range claims {
		id := strings.TrimPrefix(string(kv.Key), g.name+"/claims/")
		prio, _ := strconv.ParseUint(id[:8], 16, 32)
		detail := fmt.Sprintf("item %s, priority %d", id, int64(prio)+minInt32)
		if v, ok := st.items[g.name+"/items/"+id]; ok {
			detail += fmt.Sprintf(", attempt %d", v-1)
		}
		rows = append(rows, row{kind: "queue", name: g.name, role: "worker", lease: kv.Lease, token: kv.CreateRevision, detail: detail})
	}
	return rows
}

const minInt32 = -1 << 31

// barrierRows: the open round, if any, and every participant.
func (st *status) barrierRows(g *group) []row {
	var rows []row
	roster := map[string]bool{}
	for _, kv := range g.kvs {
		if strings.HasSuffix(string(kv.Key), "/ready") {
			lines := strings.Split(string(st.values[string(kv.Key)]), "\n")
			for _, l := range lines[1:] {
				id, _, _ := strings.Cut(l, " ")
				roster[id] = true
			}
			rows = append(rows, row{kind: "barrier", name: g.name, role: "round", token: kv.CreateRevision,
				detail: fmt.Sprintf("open, %s participants", lines[0])})
		}
	}
	for _, kv := range byCreateRevision(g.kvs) {
		key := string(kv.Key)
		id, ok := strings.CutPrefix(key, g.name+"/parties/")
		if !ok || strings.HasSuffix(id, ".watch") {
			continue
		}
		state, count, _ := strings.Cut(string(st.values[key]), " ")
		detail := "in the open round"
		if !roster[id] {
			detail = "waiting for a round"
		}
		rows = append(rows, row{kind: "barrier", name: g.name, role: state, lease: kv.Lease, token: kv.CreateRevision,
			detail: fmt.Sprintf("%s (count %s)", detail, count)})
	}
	return rows
}

// gateRows: a closed gate; waiters block until it is released.
func (st *status) gateRows(g *group) []row {
	var rows []row
	for _, kv := range g.kvs {
		detail := "closed: 'barrier wait' blocks until it is released"
		if kv.Lease == 0 {
			detail = "closed, without a lease: it stays until 'barrier release'"
		}
		rows = append(rows, row{kind: "gate", name: g.name, role: "held", lease: kv.Lease, token: kv.CreateRevision, detail: detail})
	}
	return rows
}

// serviceRows: each registered instance, serving or draining.
func (st *status) serviceRows(g *group) []row {
	var rows []row
	for _, kv := range byCreateRevision(g.kvs) {
		in := st.instances[string(kv.Key)]
		detail := fmt.Sprintf("%s at %s, weight %d", in.ID, in.Addr, in.EffectiveWeight())
		if in.Zone != "" {
			detail += ", zone " + in.Zone
		}
		if in.Version != "" {
			detail += ", version " + in.Version
		}
		rows = append(rows, row{kind: "service", name: g.name, role: string(in.Status), lease: kv.Lease, detail: detail})
	}
	return rows
}

func (st *status) print(w io.Writer) {
	where := st.prefix
	if where == "" {
		where = "all keys"
	}
	fmt.Fprintf(w, "etcd revision %d, %s\n\n", st.rev, where)
	rows := st.rows()
	if len(rows) == 0 {
		fmt.Fprintln(w, "no locks, elections, semaphores, queues, barriers, gates or services")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAME\tROLE\tLEASE\tTOKEN\tTTL\tDETAIL")
		for _, r := range rows {
			lease, token, ttl := "-", "-", "-"
			if r.lease != 0 {
				lease = fmt.Sprintf("%x", r.lease)
				if t, ok := st.ttl[r.lease]; ok {
					switch {
					case t == -1:
						ttl = "gone"
					case t >= 0:
						ttl = fmt.Sprintf("%ds", t)
					}
				}
			}
			if r.token != 0 {
				token = strconv.FormatInt(r.token, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.kind, r.name, r.role, lease, token, ttl, r.detail)
		}
		tw.Flush()
	}
	if st.other > 0 {
		fmt.Fprintf(w, "\n%s not recognised (application data, gates closed by etcdctl, ...)\n", plural(st.other, "other key"))
	}
	if st.truncated {
		fmt.Fprintln(w, "\nonly the first keys were read: narrow PREFIX or raise --max-keys")
	}
}

// plural is "1 item", "2 items".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
