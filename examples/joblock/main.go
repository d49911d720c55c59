// Command joblock runs a nightly job on three cron nodes that all fire at
// once, under a lock (package mutex): one runs it, the others see it is
// taken and skip. Then they queue up for the lock and run one after the
// other, and a fenced store refuses the write of a holder whose turn is
// over.
//
//	go run ./examples/joblock                          # against an embedded etcd
//	go run ./examples/joblock --endpoints http://127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/mutex"
)

func main() {
	endpoints := flag.String("endpoints", "", "etcd client URLs, comma-separated (default: start an embedded etcd)")
	prefix := flag.String("prefix", "/examples/joblock", "the lock's name")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, stop, err := connect(ctx, *endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	store := &reportStore{}
	nodes := []string{"cron-1", "cron-2", "cron-3"}
	sessions := map[string]*lockstep.Session{}
	for _, n := range nodes {
		s, err := lockstep.NewSession(ctx, cli, lockstep.WithTTL(2*time.Second))
		if err != nil {
			log.Fatal(err)
		}
		defer s.Close()
		sessions[n] = s
	}

	fmt.Println("02:00, every node's cron fires. Whoever gets the lock runs the job; the others skip:")
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			m, err := mutex.New(sessions[n], *prefix)
			if err != nil {
				log.Fatal(err)
			}
			l, err := m.TryLock(ctx)
			if errors.Is(err, mutex.ErrLocked) {
				fmt.Printf("  %s: the job is already running elsewhere, skipping\n", n)
				return
			}
			if err != nil {
				log.Fatal(err)
			}
			runJob(ctx, n, l, store)
		})
	}
	wg.Wait()

	fmt.Println("\n03:00, each node must run its own part, one at a time. They ask a moment apart")
	fmt.Println("and are served in that order (first come, first served):")
	var firstToken int64
	for i, n := range nodes {
		time.Sleep(50 * time.Millisecond)
		wg.Go(func() {
			m, err := mutex.New(sessions[n], *prefix)
			if err != nil {
				log.Fatal(err)
			}
			l, err := m.Lock(ctx) // waits for the holders before it
			if err != nil {
				log.Fatal(err)
			}
			if i == 0 {
				firstToken = l.Token()
			}
			runJob(ctx, n, l, store)
		})
	}
	wg.Wait()

	// A holder that was paused through its whole turn wakes up and writes
	// with the token it had: the store has seen newer ones.
	err = store.write(firstToken, "late write")
	fmt.Printf("\nA holder paused past its turn writes with its old token %d: %v\n", firstToken, err)
	fmt.Printf("The report: %s\n", strings.Join(store.lines, "; "))
}

// runJob is the job: it writes to the store, handing over the lock's token.
func runJob(ctx context.Context, node string, l *mutex.Lock, store *reportStore) {
	defer l.Unlock(ctx)
	fmt.Printf("  %s: holds the lock (token %d), running the job\n", node, l.Token())
	time.Sleep(200 * time.Millisecond) // the work
	if err := store.write(l.Token(), "part by "+node); err != nil {
		fmt.Printf("  %s: %v\n", node, err)
	}
}

// reportStore is where the job writes: it refuses a fencing token lower
// than the highest it has seen, which is what makes the lock safe against
// a holder that paused past the end of its turn.
type reportStore struct {
	mu      sync.Mutex
	highest int64
	lines   []string
}

func (s *reportStore) write(token int64, line string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("refused: token %d is older than %d", token, s.highest)
	}
	s.highest = token
	s.lines = append(s.lines, line)
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
