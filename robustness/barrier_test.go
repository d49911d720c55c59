package robustness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/barrier"
)

// barrierCount is the double barrier's count: every worker, so that a
// round needs all of them and a worker whose session died must rejoin.
const barrierCount = 4

// barrierTimeout bounds Enter and Leave: a round waits for its slowest
// participant, and for a dead one's lease to expire.
const barrierTimeout = 10 * time.Second

// TestRobustDoubleBarrier runs four workers through round after round of a
// double barrier of count 4, under the nemesis. After Enter each writes an
// "entered" record and before Leave a "leaving" record, both fenced by its
// participant key (which exists from Enter until the round closes). A
// worker whose session dies makes a new one and rejoins. Checks, from
// etcd's history:
//
//   - a round opens with exactly count participants, each registered and
//     alive at that revision;
//   - a round closes only when every participant of it has left or died:
//     none is still "entered" when the ready key is deleted;
//   - every record names a round that is open at the record's revision and
//     whose roster has the writer: so nobody enters round k+1 while another
//     participant of round k is still before its Leave (its "leaving"
//     record, or its death, comes before round k closes, and round k+1
//     opens after);
//   - Round() is the round the writer is in.
func TestRobustDoubleBarrier(t *testing.T) {
	const (
		prefix = "/robust/barrier/"
		name   = prefix + "b"
		log    = prefix + "log/"
	)
	e := newEnv(t, barrierCount)
	hist, stopHistory := e.record(prefix)
	stopWatchdog := e.watchdog()
	reg := newLeases()
	ctx, cancel := context.WithTimeout(context.Background(), runTime())
	defer cancel()
	e.runWorkers(ctx, reg, func(ctx context.Context, w *worker) {
		e.barrierWorker(ctx, w, reg, name, log)
	})
	stopWatchdog()
	stopHistory()

	e.judge(t, "double barrier", hist, func(cs []change) ([]string, string) {
		return checkBarrier(cs, name, log, barrierCount)
	})
}

func (e *env) barrierWorker(ctx context.Context, w *worker, reg *leases, name, log string) {
	me := fmt.Sprintf("barrier worker %d", w.id)
	e.track(me)
	defer e.untrack(me)
	x := &sessions{w: w, reg: reg}
	defer x.close()
	record := fmt.Sprintf("%s%d", log, w.id)
	var d *barrier.DoubleBarrier
	call := func(what string, f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, barrierTimeout)
		defer cancel()
		start := e.now()
		err := f(cctx)
		end := e.now()
		e.op()
		if err != nil {
			e.stalled(me+": "+what, start, end, err)
			x.failed(err)
		}
		return err
	}
	for ctx.Err() == nil {
		s, fresh, err := x.get(ctx)
		if err != nil {
			return
		}
		if fresh {
			if d, err = barrier.NewDouble(s, name, barrierCount); err != nil {
				continue
			}
		}
		if call("Enter", d.Enter) != nil {
			continue
		}
		mine := clientv3.Compare(clientv3.CreateRevision(d.Key()), ">", 0)
		e.fencedRecord(ctx, w, mine, record, fmt.Sprintf("entered %d %s", d.Round(), d.Key()))
		sleep(ctx, e.between(0, 5*time.Millisecond))
		e.fencedRecord(ctx, w, mine, record, fmt.Sprintf("leaving %d %s", d.Round(), d.Key()))
		if call("Leave", d.Leave) == nil {
			e.progressed(me)
		}
	}
}

func (e *env) fencedRecord(ctx context.Context, w *worker, guard clientv3.Cmp, key, value string) {
	cctx, cancel := bounded(ctx)
	defer cancel()
	w.cli.Txn(cctx).If(guard).Then(clientv3.OpPut(key, value)).Commit()
}

// barrierRound is a round as etcd's history shows it.
type barrierRound struct {
	open, close int64            // revisions; close 0 while open
	roster      map[string]int64 // party id -> create revision of its key
}

func checkBarrier(cs []change, name, log string, count int) (violations []string, notes string) {
	bad := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }
	ready, parties := name+"/ready", name+"/parties/"
	type party struct {
		create int64
		left   bool
	}
	live := map[string]party{} // by id
	var cur *barrierRound
	rounds := map[int64]*barrierRound{}
	closed, records := 0, 0
	for _, rev := range revisions(cs) {
		// The ready key first, against the state before this revision:
		// the transaction that closes a round also deletes its parties.
		for _, c := range rev {
			switch {
			case c.key != ready:
			case c.del:
				if cur == nil {
					bad("ready key deleted at revision %d with no round open", c.rev)
					continue
				}
				for id, create := range cur.roster {
					if p, ok := live[id]; ok && p.create == create && !p.left {
						bad("round %d closed at revision %d while %s had not left", cur.open, c.rev, id)
					}
				}
				cur.close = c.rev
				cur = nil
				closed++
			case c.version == 1: // the roster is written once
				cur = &barrierRound{open: c.create, roster: map[string]int64{}}
				rounds[cur.open] = cur
				lines := strings.Split(c.value, "\n")
				for _, line := range lines[1:] {
					id, r, _ := strings.Cut(line, " ")
					cur.roster[id], _ = strconv.ParseInt(r, 10, 64)
				}
				if len(cur.roster) != count || lines[0] != strconv.Itoa(count) {
					bad("round %d opened with %d participants (count %s), want %d", cur.open, len(cur.roster), lines[0], count)
				}
				for id, create := range cur.roster {
					if p, ok := live[id]; !ok || p.create != create || p.left {
						bad("round %d opened with %s (registered at %d), which was not entered then (%+v)", cur.open, id, create, p)
					}
				}
			}
		}
		for _, c := range rev {
			switch {
			case strings.HasPrefix(c.key, parties) && !strings.HasSuffix(c.key, ".watch"):
				id := strings.TrimPrefix(c.key, parties)
				if c.del {
					delete(live, id)
				} else {
					live[id] = party{c.create, strings.HasPrefix(c.value, "left")}
				}
			case strings.HasPrefix(c.key, log) && !c.del:
				records++
				f := strings.Fields(c.value)
				round, _ := strconv.ParseInt(f[1], 10, 64)
				id := strings.TrimPrefix(f[2], parties)
				r := rounds[round]
				switch {
				case r == nil || cur != r:
					bad("%s record of %s for round %d at revision %d, when that round was not open", f[0], id, round, c.rev)
				case r.roster[id] == 0:
					bad("%s record of %s for round %d at revision %d, which is not in that round", f[0], id, round, c.rev)
				}
			}
		}
	}
	notes = fmt.Sprintf("%d rounds completed, %d fenced records accepted", closed, records)
	return violations, notes
}
