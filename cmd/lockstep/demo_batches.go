package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
)

const (
	demoWorkers = 4
	demoBatches = 3
)

// batchRecord is one worker's times in one batch.
type batchRecord struct {
	batch, worker                    int
	arrived, started, finished, left time.Time
	err                              error
}

func (d *demo) batches(ctx context.Context) error {
	const prefix = "/demo/barrier/batch"
	d.n.story("3. Batch workers in lockstep (double barrier)", fmt.Sprintf(`
%d workers process %d batches, at different speeds. Around each batch they
enter and leave the double barrier %s: nobody starts
a batch before all %d are there, nobody goes on before all have finished.`, demoWorkers, demoBatches, prefix, demoWorkers), true)

	// Records never block: the channel holds all of them.
	records := make(chan batchRecord, demoWorkers*demoBatches)
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		sessions []*lockstep.Session
	)
	defer func() {
		cancel()
		wg.Wait()
		for _, s := range sessions {
			s.Close()
		}
	}()
	for w := range demoWorkers {
		s, err := d.session(ctx, d.cli)
		if err != nil {
			return err
		}
		sessions = append(sessions, s)
		db, err := barrier.NewDouble(s, prefix, demoWorkers)
		if err != nil {
			return err
		}
		wg.Go(func() { batchWorker(ctx, db, w, records) })
	}

	byBatch := make([][]batchRecord, demoBatches)
	fmt.Fprintf(d.n.w, "  %-7s  %-27s  %-7s  %-27s  %s\n", "", "arrived  (w1 w2 w3 w4)", "started", "finished  (w1 w2 w3 w4)", "left")
	var lastFinished time.Time
	inOrder := true
	for done := 0; done < demoWorkers*demoBatches; done++ {
		var r batchRecord
		select {
		case r = <-records:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		byBatch[r.batch] = append(byBatch[r.batch], r)
		if len(byBatch[r.batch]) < demoWorkers {
			continue
		}
		rs := make([]batchRecord, demoWorkers)
		for _, r := range byBatch[r.batch] {
			rs[r.worker] = r
		}
		var arrived, finished []string
		var started, left time.Time
		for _, r := range rs {
			arrived = append(arrived, d.n.since(r.arrived))
			finished = append(finished, d.n.since(r.finished))
			started, left = later(started, r.started), later(left, r.left)
			if r.started.Before(lastFinished) {
				inOrder = false
			}
		}
		for _, r := range rs {
			lastFinished = later(lastFinished, r.finished)
		}
		fmt.Fprintf(d.n.w, "  batch %d  %-27s  %-7s  %-27s  %s\n", r.batch+1,
			strings.Join(arrived, " "), d.n.since(started), strings.Join(finished, " "), d.n.since(left))
	}
	fmt.Fprintln(d.n.w)
	d.n.say("Each batch starts when the last worker arrives and ends for everyone when the")
	if inOrder {
		d.n.say("slowest finishes: no worker started a batch before all had finished the previous one.")
	} else {
		d.n.say("slowest finishes, yet a worker started a batch before all had finished the previous one!")
	}
	return nil
}

// batchWorker goes through the batches. In the first it arrives late in
// proportion to its number; its work takes 50 ms times a number that
// rotates, so that a different worker is slowest in each batch.
func batchWorker(ctx context.Context, db *barrier.DoubleBarrier, w int, records chan<- batchRecord) {
	for b := range demoBatches {
		r := batchRecord{batch: b, worker: w}
		if b == 0 {
			if r.err = pause(ctx, time.Duration(w)*100*time.Millisecond); r.err != nil {
				records <- r
				return
			}
		}
		r.arrived = time.Now()
		if r.err = db.Enter(ctx); r.err == nil {
			r.started = time.Now()
			r.err = pause(ctx, time.Duration(1+(w+b)%demoWorkers)*50*time.Millisecond)
			r.finished = time.Now()
		}
		if r.err == nil {
			r.err = db.Leave(ctx)
			r.left = time.Now()
		}
		records <- r
		if r.err != nil {
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
