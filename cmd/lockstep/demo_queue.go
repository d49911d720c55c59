package main

import (
	"context"
	"errors"
	"time"

	"github.com/lockstep-go/lockstep/queue"
)

func (d *demo) queue(ctx context.Context) error {
	const prefix = "/demo/queue/jobs"
	d.n.story("4. Priority work queue: a consumer crashes, nothing is lost (queue)", `
A producer pushes four jobs to `+prefix+`; lower priority values go first.
consumer-1 takes the most urgent one and crashes before it acks it.
consumer-2 takes over the queue.`, false)

	producer, err := d.session(ctx, d.cli)
	if err != nil {
		return err
	}
	defer producer.Close()
	q, err := queue.New(producer, prefix)
	if err != nil {
		return err
	}
	jobs := []struct {
		value    string
		priority int
	}{
		{"rebuild sitemap", 5},
		{"resize img-1", 0},
		{"page on-call: disk full", -10},
		{"resize img-2", 0},
	}
	for _, j := range jobs {
		if _, err := q.Enqueue(ctx, j.value, queue.WithPriority(j.priority)); err != nil {
			return err
		}
		d.n.at(time.Now(), "producer pushes %-27q priority %3d", j.value, j.priority)
	}

	c1, err := d.session(ctx, d.cli)
	if err != nil {
		return err
	}
	defer c1.Close()
	q1, err := queue.New(c1, prefix)
	if err != nil {
		return err
	}
	it, err := q1.Dequeue(ctx)
	if err != nil {
		return err
	}
	d.n.at(time.Now(), "consumer-1 gets    %-27q priority %3d, attempt %d", it.Value(), it.Priority(), it.Attempts())
	if _, err := d.cli.Revoke(ctx, c1.Lease()); err != nil {
		return err
	}
	d.n.at(time.Now(), "consumer-1 crashes before its ack. Its claim was attached to its session's")
	d.n.say("lease, which etcd ends (revoked here; a crash takes the 2 s TTL).")
	// The crashed claim's end, as this process sees it: consumers in one
	// process share what they know, so consumer-2 would skip the item as
	// someone else's until then.
	select {
	case <-it.Done():
	case <-ctx.Done():
		return ctx.Err()
	}

	c2, err := d.session(ctx, d.cli)
	if err != nil {
		return err
	}
	defer c2.Close()
	q2, err := queue.New(c2, prefix)
	if err != nil {
		return err
	}
	for range jobs {
		it, err := q2.Dequeue(ctx)
		if err != nil {
			return err
		}
		d.n.at(time.Now(), "consumer-2 gets    %-27q priority %3d, attempt %d: done, ack", it.Value(), it.Priority(), it.Attempts())
		if err := it.Ack(ctx); err != nil {
			return err
		}
	}
	n, err := q2.Len(ctx)
	if err != nil {
		return err
	}
	d.n.at(time.Now(), "the queue is empty: Len = %d.", n)
	if err := it.Ack(ctx); errors.Is(err, queue.ErrClaimLost) {
		d.n.at(time.Now(), "had consumer-1 only been paused, its late ack would now be refused: ErrClaimLost.")
	}
	d.n.say("The crashed delivery came back first, attempt 2; then priority order, first in")
	d.n.say("first out within a priority. Delivery is at least once: make the work idempotent")
	d.n.say("(the item's ID is the same on every delivery) or fence it with the claim's token.")
	return nil
}
