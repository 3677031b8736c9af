package conformance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"

	"github.com/benefit-issuance/benefits/local/apache"
	"github.com/benefit-issuance/benefits/local/rocketmq"
)

// Short timings, the same on both brokers where the real one allows: invisible times down to 1 s,
// long polls from 100 ms to 2 s (a push consumer's stop waits for its poll), transaction check-back
// after about a second.
const (
	minInvisible   = time.Second
	minLongPolling = 100 * time.Millisecond
	maxLongPolling = 2 * time.Second
)

// Emulator is our broker with the scenarios' topics and groups declared, on a data folder so that it
// can restart.
type Emulator struct {
	cfg  rocketmq.Config
	addr string
	b    *rocketmq.Broker
	srv  *rocketmq.Server
}

// StartEmulator starts the emulator on a free port with dataDir as its store.
func StartEmulator(dataDir string, topics []Topic, groups []Group) (*Emulator, error) {
	cfg := rocketmq.Config{
		DataDir: dataDir, NoFsync: true, MinInvisible: minInvisible, MinLongPolling: minLongPolling, MaxLongPolling: maxLongPolling,
		// Transaction check-back: 6 s and 30 s scaled to about 1 s and 5 s; the retry backoff of push
		// consumers shrinks alike.
		TimeScale: 1.0 / 6,
		// As Apache RocketMQ answers gRPC clients: no topic is created on first use.
		NoAutoCreate: true, FIFOGroups: map[string]bool{}, GroupMaxAttempts: map[string]int{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	types := map[string]v2.MessageType{"NORMAL": v2.MessageType_NORMAL, "FIFO": v2.MessageType_FIFO, "DELAY": v2.MessageType_DELAY, "TRANSACTION": v2.MessageType_TRANSACTION}
	for _, t := range topics {
		cfg.Topics = append(cfg.Topics, rocketmq.TopicDecl{Name: t.Name, Type: types[t.Type]})
	}
	for _, g := range groups {
		if g.FIFO {
			cfg.FIFOGroups[g.Name] = true
		}
		if g.MaxAttempts > 0 {
			cfg.GroupMaxAttempts[g.Name] = g.MaxAttempts
		}
	}
	e := &Emulator{cfg: cfg, addr: "127.0.0.1:0"}
	if err := e.open(); err != nil {
		return nil, err
	}
	e.addr = e.srv.Addr()
	return e, nil
}

func (e *Emulator) open() error {
	b, err := rocketmq.New(e.cfg)
	if err != nil {
		return err
	}
	srv, err := rocketmq.Listen(b, e.addr)
	if err != nil {
		b.Close()
		return err
	}
	e.b, e.srv = b, srv
	return nil
}

// Target is the emulator as the scenarios see it.
func (e *Emulator) Target() Target {
	return Target{Name: "emulator", Endpoint: e.addr, Restart: func(context.Context) error {
		e.Close()
		return e.open()
	}}
}

// Close stops the emulator.
func (e *Emulator) Close() {
	if e.srv != nil {
		e.srv.Close()
		e.b.Close()
		e.srv, e.b = nil, nil
	}
}

// StartApache starts Apache RocketMQ with the scenarios' topics and groups created.
func StartApache(ctx context.Context, cfg apache.Config, topics []Topic, groups []Group) (*apache.Broker, Target, error) {
	b, err := apache.Start(ctx, cfg)
	if err != nil {
		return nil, Target{}, err
	}
	var ts []apache.Topic
	for _, t := range topics {
		ts = append(ts, apache.Topic{Name: t.Name, Type: t.Type})
	}
	var gs []apache.Group
	for _, g := range groups {
		gs = append(gs, apache.Group{Name: g.Name, MaxAttempts: g.MaxAttempts, FIFO: g.FIFO})
	}
	start := time.Now()
	if err := b.EnsureTopics(ctx, ts, gs); err != nil {
		b.Stop()
		return nil, Target{}, err
	}
	fmt.Fprintf(logOr(cfg.Log), "apache-rocketmq: %d topics and %d groups created in %s\n", len(ts), len(gs), time.Since(start).Round(100*time.Millisecond))
	return b, Target{Name: "apache", Endpoint: b.Endpoint(), Restart: b.Restart}, nil
}

func logOr(w io.Writer) io.Writer {
	if w == nil {
		return os.Stderr
	}
	return w
}
