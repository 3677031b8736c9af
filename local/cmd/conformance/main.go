// Command conformance runs the broker scenarios with the official clients against the emulator,
// Apache RocketMQ, or both, and prints the matrix scenario × client × broker.
//
//	go run ./local/cmd/conformance --broker both --clients go,java,node,python
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/apache"
	"github.com/benefit-issuance/benefits/local/conformance"
)

func main() {
	broker := flag.String("broker", "emulator", "emulator, apache or both")
	clients := flag.String("clients", "go,java,node,python", "comma-separated clients: go, java, node, python")
	scenarios := flag.String("scenarios", "", "comma-separated scenarios (default: all)")
	heap := flag.Int("heap-mb", 384, "Apache RocketMQ broker+proxy heap in MiB")
	sequential := flag.Bool("sequential", false, "run the clients one after another rather than at the same time")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, *broker, strings.Split(*clients, ","), split(*scenarios), *heap, !*sequential)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func run(ctx context.Context, broker string, clients, scenarios []string, heapMB int, parallel bool) (bool, error) {
	wd, err := os.Getwd()
	if err != nil {
		return false, err
	}
	cacheDir, err := apache.ModuleCacheDir(wd)
	if err != nil {
		return false, err
	}
	runners := map[string]conformance.Runner{}
	for _, c := range clients {
		r, err := conformance.NewRunner(c, wd, os.Stderr)
		if err != nil {
			return false, err
		}
		runners[c] = r
	}
	topics, groups := conformance.Resources(clients)
	var results []conformance.Result
	runAll := func(t conformance.Target) {
		start := time.Now()
		results = append(results, conformance.RunMatrix(ctx, t, clients, runners, scenarios, parallel, os.Stderr)...)
		fmt.Fprintf(os.Stderr, "conformance: all clients on %s in %s\n", t.Name, time.Since(start).Round(time.Second))
	}
	if broker == "emulator" || broker == "both" {
		dir, err := os.MkdirTemp("", "conformance-emulator-")
		if err != nil {
			return false, err
		}
		e, err := conformance.StartEmulator(dir, topics, groups)
		if err != nil {
			return false, err
		}
		runAll(e.Target())
		e.Close()
		os.RemoveAll(dir)
	}
	if broker == "apache" || broker == "both" {
		b, t, err := conformance.StartApache(ctx, apache.Config{CacheDir: cacheDir, Log: os.Stderr, HeapMB: heapMB}, topics, groups)
		if err != nil {
			return false, err
		}
		ns, bk := b.RSS()
		fmt.Fprintf(os.Stderr, "apache-rocketmq: started in %s; resident memory: name server %d MiB, broker+proxy %d MiB\n",
			b.StartTime.Round(100*time.Millisecond), ns>>20, bk>>20)
		runAll(t)
		ns, bk = b.RSS()
		fmt.Fprintf(os.Stderr, "apache-rocketmq: resident memory after the run: name server %d MiB, broker+proxy %d MiB\n", ns>>20, bk>>20)
		b.Stop()
	}
	conformance.PrintMatrix(os.Stdout, results)
	for _, r := range results {
		if r.Status == "FAIL" {
			return true, nil
		}
	}
	return false, nil
}
