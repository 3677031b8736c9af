// Command rocketmq-local runs the local RocketMQ 5 broker emulator:
//
//	go run ./local/cmd/rocketmq-local --listen 127.0.0.1:8081 --data DIR
//
// Clients use the listen address as their endpoint. Without --data everything is kept in memory.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/rocketmq"
)

type topicFlags []rocketmq.TopicDecl

func (t *topicFlags) String() string { return fmt.Sprint(len(*t), " topics") }

func (t *topicFlags) Set(v string) error {
	name, typ, _ := strings.Cut(v, ":")
	mt, ok := rocketmq.ParseMessageType(typ)
	if !ok {
		return fmt.Errorf("unknown message type %q (NORMAL, FIFO, DELAY, TRANSACTION or MIXED)", typ)
	}
	*t = append(*t, rocketmq.TopicDecl{Name: name, Type: mt})
	return nil
}

func main() {
	var topics topicFlags
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve gRPC on (plaintext and TLS)")
	data := flag.String("data", "", "folder for the message log; empty keeps everything in memory")
	maxAttempts := flag.Int("max-attempts", rocketmq.DefaultMaxAttempts, "a consumer group's max delivery attempts before the dead-letter queue")
	minInvisible := flag.Duration("min-invisible", rocketmq.DefaultMinInvisible, "shortest invisible duration a receive may ask for")
	maxLongPolling := flag.Duration("max-long-polling", rocketmq.DefaultMaxLongPolling, "longest long poll, and the one push consumers are told to ask for")
	minLongPolling := flag.Duration("min-long-polling", rocketmq.DefaultMinLongPolling, "shortest long poll; a receive whose deadline leaves less is refused")
	timeScale := flag.Float64("time-scale", 1, "multiplies retry backoff and transaction check intervals (0.01 makes a day's schedule fast)")
	noFsync := flag.Bool("no-fsync", false, "do not fsync the log before acknowledging a send")
	noAutoCreate := flag.Bool("no-auto-create", false, "refuse topics not declared with --topic")
	verbose := flag.Bool("v", false, "log every dead-lettered or discarded message")
	flag.Var(&topics, "topic", "declare a topic as NAME or NAME:TYPE (repeatable)")
	fifoGroups := map[string]bool{}
	flag.Func("fifo-group", "a consumer group that consumes FIFO topics in order (repeatable)", func(v string) error {
		fifoGroups[v] = true
		return nil
	})
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	b, err := rocketmq.New(rocketmq.Config{
		MaxAttempts: *maxAttempts, MinInvisible: *minInvisible, MinLongPolling: *minLongPolling, MaxLongPolling: *maxLongPolling, TimeScale: *timeScale, DataDir: *data,
		NoFsync: *noFsync, Topics: topics, NoAutoCreate: *noAutoCreate, Logger: log, FIFOGroups: fifoGroups,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rocketmq-local:", err)
		os.Exit(1)
	}
	srv, err := rocketmq.Listen(b, *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rocketmq-local:", err)
		os.Exit(1)
	}
	where := "in memory"
	if *data != "" {
		where = "log in " + *data
	}
	fmt.Fprintf(os.Stderr, "rocketmq-local: serving RocketMQ 5 gRPC on %s (%s, max attempts %d, time scale %g)\n", srv.Addr(), where, *maxAttempts, *timeScale)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	start := time.Now()
	srv.Close()
	if err := b.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "rocketmq-local: closing the log:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "rocketmq-local: stopped in %s\n", time.Since(start).Round(time.Millisecond))
}
