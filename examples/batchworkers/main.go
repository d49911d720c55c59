// Command batchworkers runs four workers through three batches with a
// double barrier (package barrier): each batch is split in four shards;
// every worker enters the barrier, sums its shard and writes its partial
// result, then leaves. Leave returns only when every worker has written,
// so the coordinator can read the batch's total at once, and nobody
// starts batch k+1 before batch k is complete.
//
//	go run ./examples/batchworkers                          # against an embedded etcd
//	go run ./examples/batchworkers --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/embedded"
)

const (
	workers = 4
	batches = 3
)

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/batchworkers", "the barrier's name; results go under PREFIX-results/")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, stop, err := connect(ctx, *endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	results := *prefix + "-results/"
	defer cli.Delete(context.WithoutCancel(ctx), results, clientv3.WithPrefix())

	fmt.Printf("%d workers, %d batches. A batch's total is read the moment every worker has left it:\n", workers, batches)
	var wg sync.WaitGroup
	for w := range workers {
		s, err := lockstep.NewSession(ctx, cli, lockstep.WithTTL(2*time.Second))
		if err != nil {
			log.Fatal(err)
		}
		defer s.Close()
		d, err := barrier.NewDouble(s, *prefix, workers)
		if err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			if err := work(ctx, cli, d, w, results); err != nil {
				log.Fatalf("worker %d: %v", w+1, err)
			}
		})
	}
	wg.Wait()
}

// work is one worker: enter, process its shard, leave, batch after batch.
// Worker 0 also reports each batch's total once all have left it.
func work(ctx context.Context, cli *clientv3.Client, d *barrier.DoubleBarrier, w int, results string) error {
	for b := 1; b <= batches; b++ {
		if err := d.Enter(ctx); err != nil {
			return err
		}
		// The shard: numbers 1..100 of batch b, every workers-th one.
		sum := 0
		for n := 1 + w; n <= 100; n += workers {
			sum += n * b
		}
		time.Sleep(time.Duration(50*(1+(w+b)%workers)) * time.Millisecond) // workers differ in speed
		key := fmt.Sprintf("%sbatch-%d/worker-%d", results, b, w+1)
		if _, err := cli.Put(ctx, key, strconv.Itoa(sum)); err != nil {
			return err
		}
		if err := d.Leave(ctx); err != nil {
			return err
		}
		if w == 0 {
			// Everyone has left: every partial result is written.
			resp, err := cli.Get(ctx, fmt.Sprintf("%sbatch-%d/", results, b), clientv3.WithPrefix())
			if err != nil {
				return err
			}
			total, parts := 0, []string{}
			for _, kv := range resp.Kvs {
				n, _ := strconv.Atoi(string(kv.Value))
				total += n
				parts = append(parts, string(kv.Value))
			}
			fmt.Printf("batch %d: %d partial results (%s), total %d\n", b, len(resp.Kvs), strings.Join(parts, " + "), total)
		}
	}
	return nil
}

// connect returns a client of the etcd at endpoints, or of an embedded one
// started here if endpoints is empty, and a function that closes both.
func connect(ctx context.Context, endpoints string) (*clientv3.Client, func(), error) {
	if endpoints == "" {
		srv, err := embedded.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		cli, err := srv.Client()
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return cli, func() { srv.Close() }, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	return cli, func() { cli.Close() }, nil
}
