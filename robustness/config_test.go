package robustness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/config"
)

const (
	configWriters = 2
	configReaders = 3
	configKeys    = 3
	configCatchUp = 3 * time.Second // readers' time to take the last write
)

// TestRobustConfig runs writers that change a configuration of several
// keys with compare-and-swap writes (config.Put with IfRevision, and
// transactions that change two keys at once, guarded the same way), and
// readers that follow it with config.Open and a Map decoder, under the
// nemesis (compaction included). Checks:
//
//   - every version a reader saw is the committed state of the prefix at
//     its revision (replayed from etcd's history): never half of a
//     two-key write, never a deleted key's old value;
//   - a reader's revisions never go backwards;
//   - no compare-and-swap write overwrote a change it had not read: each
//     accepted write's guard held at its revision;
//   - every reader, once the faults stop, catches up with the last write.
func TestRobustConfig(t *testing.T) {
	const (
		prefix = "/robust/config/"
		app    = prefix + "app/"
	)
	e := newEnv(t, configWriters+configReaders)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases()
	const me = "config (any reader)"
	e.track(me)
	var rec configRecords
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		if w.id < configWriters {
			// Writers stop a little before the end, so that the readers'
			// last versions can be held to the last write.
			wctx, cancel := context.WithTimeout(ctx, runTime()-configCatchUp)
			defer cancel()
			e.configWriter(wctx, w, app, &rec)
		} else {
			e.configReader(ctx, w, app, me, &rec)
		}
	})
	e.untrack(me)
	stopWatchdog()
	stopHistory()

	e.judge(t, "config", hist, func(cs []change) ([]string, string) {
		return rec.check(cs, app)
	})
}

// seenVersion is one version a reader was given.
type seenVersion struct {
	reader int
	rev    int64
	values map[string]string
}

// casWrite is one compare-and-swap write that etcd accepted: at revision
// rev it set keys, each guarded by the revision it was read at.
type casWrite struct {
	rev    int64
	guards map[string]int64
	values map[string]string
}

type configRecords struct {
	mu     sync.Mutex
	seen   []seenVersion
	writes []casWrite
	final  map[int]int64 // each reader's last revision
}

func (r *configRecords) saw(v seenVersion) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, v)
	if r.final == nil {
		r.final = map[int]int64{}
	}
	r.final[v.reader] = v.rev
}

func (r *configRecords) wrote(w casWrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, w)
}

func (e *env) configWriter(ctx context.Context, w *worker, app string, rec *configRecords) {
	me := fmt.Sprintf("config writer %d", w.id)
	e.track(me)
	defer e.untrack(me)
	for seq := 0; ctx.Err() == nil; seq++ {
		cctx, cancel := bounded(ctx)
		err := e.configWrite(cctx, w, app, seq, rec)
		cancel()
		e.op()
		switch {
		case err == nil, errors.Is(err, config.ErrConflict):
			e.progressed(me)
		case ctx.Err() == nil:
			sleep(ctx, e.between(0, 20*e.holdTime()+1))
		}
	}
}

// configWrite reads the configuration and changes one key, or two in one
// transaction, or deletes one, each write guarded by what it read.
func (e *env) configWrite(ctx context.Context, w *worker, app string, seq int, rec *configRecords) error {
	resp, err := w.cli.Get(ctx, app, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	read := map[string]int64{}
	for _, kv := range resp.Kvs {
		read[string(kv.Key)] = kv.ModRevision
	}
	key := func() string { return fmt.Sprintf("%sk%d", app, e.intn(configKeys)) }
	value := fmt.Sprintf("w%d-%d", w.id, seq)
	switch k := key(); e.intn(4) {
	case 0: // two keys at once
		k2 := key()
		if k2 == k {
			return nil
		}
		guards := map[string]int64{k: read[k], k2: read[k2]}
		res, err := w.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "<", read[k]+1), clientv3.Compare(clientv3.ModRevision(k2), "<", read[k2]+1)).
			Then(clientv3.OpPut(k, value), clientv3.OpPut(k2, value)).
			Commit()
		if err != nil {
			return err
		}
		if !res.Succeeded {
			return config.ErrConflict
		}
		rec.wrote(casWrite{rev: res.Header.Revision, guards: guards, values: map[string]string{k: value, k2: value}})
	case 1: // a delete, guarded the same way
		res, err := w.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "<", read[k]+1)).Then(clientv3.OpDelete(k)).Commit()
		if err != nil {
			return err
		}
		if !res.Succeeded {
			return config.ErrConflict
		}
	default:
		rev, err := config.Put(ctx, w.cli, k, value, config.IfRevision(read[k]))
		if err != nil {
			return err
		}
		rec.wrote(casWrite{rev: rev, guards: map[string]int64{k: read[k]}, values: map[string]string{k: value}})
	}
	return nil
}

func (e *env) configReader(ctx context.Context, w *worker, app, tracker string, rec *configRecords) {
	for ctx.Err() == nil {
		octx, cancel := bounded(ctx)
		cfg, err := config.Open(octx, w.cli, app, config.Map())
		cancel()
		e.op()
		if err != nil {
			sleep(ctx, e.between(0, 100*e.holdTime()+1))
			continue
		}
		for v := range cfg.Updates(ctx) {
			e.op()
			e.progressed(tracker)
			rec.saw(seenVersion{reader: w.id, rev: v.Revision, values: v.Value})
		}
		cfg.Close()
	}
}

// check replays etcd's history of the configuration and judges what the
// readers saw and the writers wrote against it.
func (r *configRecords) check(cs []change, app string) (violations []string, notes string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The state after each revision that changed the configuration.
	type state struct {
		rev    int64
		values map[string]string
		mod    map[string]int64
	}
	var states []state
	cur := state{values: map[string]string{}, mod: map[string]int64{}}
	for _, txn := range revisions(cs) {
		touched := false
		for _, c := range txn {
			if !strings.HasPrefix(c.key, app) {
				continue
			}
			touched = true
			k := strings.TrimPrefix(c.key, app)
			if c.del {
				delete(cur.values, k)
				delete(cur.mod, c.key)
			} else {
				cur.values[k] = c.value
				cur.mod[c.key] = c.rev
			}
		}
		if touched {
			cur.rev = txn[0].rev
			states = append(states, state{cur.rev, maps.Clone(cur.values), maps.Clone(cur.mod)})
		}
	}
	at := func(rev int64) state {
		s := state{values: map[string]string{}}
		for _, st := range states {
			if st.rev > rev {
				break
			}
			s = st
		}
		return s
	}
	last := map[int]int64{}
	for _, v := range r.seen {
		if v.rev < last[v.reader] {
			violations = append(violations, fmt.Sprintf("reader %d went back from revision %d to %d", v.reader, last[v.reader], v.rev))
		}
		last[v.reader] = v.rev
		if want := at(v.rev).values; !maps.Equal(want, v.values) {
			violations = append(violations, fmt.Sprintf("reader %d saw %v at revision %d; etcd held %v", v.reader, v.values, v.rev, want))
		}
	}
	for _, w := range r.writes {
		before := at(w.rev - 1)
		for k, g := range w.guards {
			if m := before.mod[k]; m > g {
				violations = append(violations, fmt.Sprintf("the write at %d overwrote %s, written at %d after its guard %d", w.rev, k, m, g))
			}
		}
	}
	end := int64(0)
	if len(states) > 0 {
		end = states[len(states)-1].rev
	}
	for reader, rev := range r.final {
		if rev < end {
			violations = append(violations, fmt.Sprintf("reader %d ended at revision %d; the last write was at %d", reader, rev, end))
		}
	}
	return violations, fmt.Sprintf("%d versions of the configuration, %d seen by %d readers, %d accepted compare-and-swap writes",
		len(states), len(r.seen), len(r.final), len(r.writes))
}
