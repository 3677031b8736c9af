// Command faults runs the fault suite (`make faults`): seeded schedules of faults against a private
// local stack, each checked for the money invariants. It exits 1 when any schedule violates one.
//
//	SCHEDULES=200 SEED=1 go run ./local/cmd/faults
//	SCHEDULE='7/cut:rocketmq@800ms+3200ms,redis-restart-empty:@4000ms' go run ./local/cmd/faults
//	REDIS=cluster SCHEDULES=20 go run ./local/cmd/faults
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/faults/chaos"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func main() {
	cfg := chaos.Config{Out: os.Stdout, ResultsDir: "local/faults/results"}
	flag.IntVar(&cfg.Schedules, "schedules", envInt("SCHEDULES", 200), "how many seeded schedules (env SCHEDULES)")
	seed := flag.Uint64("seed", uint64(envInt("SEED", 1)), "first seed; schedule i uses seed+i (env SEED)")
	replay := flag.String("schedule", os.Getenv("SCHEDULE"), "run these schedules (as printed, separated by ';') instead of generated ones (env SCHEDULE)")
	flag.DurationVar(&cfg.Workload, "workload", 4*time.Second, "how long each schedule's workload runs")
	flag.BoolVar(&cfg.Shrink, "shrink", os.Getenv("SHRINK") != "0", "reduce each failing schedule to a minimal reproduction (env SHRINK=0 turns it off)")
	flag.StringVar(&cfg.ResultsDir, "results", cfg.ResultsDir, "folder for latest.json")
	flag.IntVar(&cfg.Workers, "workers", envInt("WORKERS", 2), "private stacks running schedules at once (env WORKERS)")
	flag.StringVar(&cfg.Broker, "broker", os.Getenv("BROKER"), "RocketMQ: emulator (default) or apache (env BROKER)")
	flag.StringVar(&cfg.Redis, "redis", os.Getenv("REDIS"), "Redis: standalone (default) or cluster, 3 masters with a replica each, with failover faults (env REDIS)")
	recheck := flag.String("recheck", "", "check saved runs (a glob of local/faults/results/history-*.json) again instead of running schedules")
	flag.Parse()
	if *recheck != "" {
		files, err := filepath.Glob(*recheck)
		if err != nil || len(files) == 0 {
			fmt.Fprintln(os.Stderr, "faults: no saved run matches", *recheck)
			os.Exit(2)
		}
		n, err := chaos.Recheck(files, os.Stdout)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			os.Exit(2)
		}
		if n > 0 {
			os.Exit(1)
		}
		return
	}
	cfg.Seed = *seed
	if *replay != "" {
		cfg.Replay = strings.Split(*replay, ";")
		if os.Getenv("SCHEDULES") == "" && !flagSet("schedules") {
			cfg.Schedules = 0 // only the schedules asked for
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(2)
	}
	if rep.Violations > 0 {
		os.Exit(1)
	}
}
