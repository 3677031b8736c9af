// Package rmqclient is the RocketMQ 5 client side of package mq: the producer that sends its messages.
// It is a package of its own so that a function that never talks to the broker (ledger, cachesync)
// links none of the client's gRPC, protobuf and OpenTelemetry dependencies.
package rmqclient

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	"github.com/apache/rocketmq-clients/golang/v5/pkg/zaplog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
)

// Config names the broker and the topics.
type Config struct {
	Endpoint     string // host:port of the RocketMQ 5 proxy
	AccessKey    string
	SecretKey    string
	Namespace    string
	ChangesTopic string
	GrantsTopic  string
	// GrantStartsTopic takes delay messages (RocketMQ 5 topic type DELAY) for grant campaigns' starts.
	GrantStartsTopic string
	// SendAttempts is the client's own retry count for one send (the design's "synchronous send with
	// retries"); the outbox relay covers what still fails.
	SendAttempts int32
	// LogDir receives the client's own log file. The client defaults to $user.home/logs, which is unset
	// on FC and resolves to /logs, a read-only path there; /tmp is writable.
	LogDir string
}

// ConfigureClientLogging points the RocketMQ client's file logger somewhere writable and quiet. It must
// run before the first client is created.
func ConfigureClientLogging(dir string) {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "rocketmqlogs")
	}
	if os.Getenv(rmq.CLIENT_LOG_ROOT) == "" {
		_ = os.Setenv(rmq.CLIENT_LOG_ROOT, dir)
	}
	if os.Getenv(rmq.CLIENT_LOG_LEVEL) == "" {
		_ = os.Setenv(rmq.CLIENT_LOG_LEVEL, "warn")
	}
	rmq.ResetLogger()
	quietRPCLog.Do(func() { quietRPCLogging(dir) })
}

var (
	quietRPCLog sync.Once
	rpcLogFile  string // where the interceptor's warnings and errors go, once configured
)

// quietRPCLogging keeps the client's gRPC interceptor (pkg/grpc/middleware/zaplog) to warnings and
// errors. Its default logger (conn_options.go defaultConnOptions: zaplog.New(), Info level, whatever
// CLIENT_LOG_LEVEL says) writes a JSON line to /tmp/rocketmq-logger.log for every call, a send, a
// receive or an ack alike: a write(2) per message (4 % of the claim function's CPU in make bench's
// profile), and up to 2 GB of lines on an FC instance whose /tmp holds 512 MB. A failed call is still
// logged with its request and response. NewClientConn is the client's own seam for how connections
// are made; each of its ConnOptions is applied in order, so this logger replaces the default.
func quietRPCLogging(dir string) {
	rpcLogFile = filepath.Join(dir, "rocketmq-grpc.log")
	logger := zaplog.New(zaplog.WithFileName(rpcLogFile)).
		WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))
	newConn := rmq.NewClientConn
	rmq.NewClientConn = func(endpoint string, opts ...rmq.ConnOption) (rmq.ClientConn, error) {
		return newConn(endpoint, append(opts, rmq.WithZapLogger(logger))...)
	}
}

// Publisher sends change events and grants. It is safe for concurrent use.
type Publisher struct {
	producer rmq.Producer
	cfg      Config
}

// NewPublisher starts a producer. A broker that cannot be reached is a retryable failure: FC retries
// the invocation and the outbox or the grant stream keeps what was not sent.
func NewPublisher(cfg Config) (*Publisher, error) {
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("rocketmq: endpoint is required")
	}
	if cfg.SendAttempts <= 0 {
		cfg.SendAttempts = 3
	}
	ConfigureClientLogging(cfg.LogDir)
	var topics []string
	for _, t := range []string{cfg.ChangesTopic, cfg.GrantsTopic, cfg.GrantStartsTopic} {
		if t != "" {
			topics = append(topics, t)
		}
	}
	p, err := rmq.NewProducer(&rmq.Config{
		Endpoint:    cfg.Endpoint,
		NameSpace:   cfg.Namespace,
		Credentials: &credentials.SessionCredentials{AccessKey: cfg.AccessKey, AccessSecret: cfg.SecretKey},
	}, rmq.WithTopics(topics...), rmq.WithMaxAttempts(cfg.SendAttempts))
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("rocketmq producer: %w", err))
	}
	if err := p.Start(); err != nil {
		return nil, fault.Retryable(fmt.Errorf("rocketmq producer start: %w", err))
	}
	return &Publisher{producer: p, cfg: cfg}, nil
}

// PublishChange sends {entity, id, version}; keyed by the entity so operators can find it.
func (p *Publisher) PublishChange(ctx context.Context, ev mq.ChangeEvent) error {
	if err := ev.Validate(); err != nil {
		return fault.Permanent(err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fault.Permanent(err)
	}
	msg := &rmq.Message{Topic: p.cfg.ChangesTopic, Body: body}
	msg.SetTag(ev.Entity)
	msg.SetKeys(ev.Entity + ":" + ev.ID)
	return p.send(ctx, msg)
}

// PublishGrant sends a granted claim to the ledger; keyed by claim id, which is also MySQL's key.
func (p *Publisher) PublishGrant(ctx context.Context, c domain.Claim) error {
	body, err := json.Marshal(c)
	if err != nil {
		return fault.Permanent(err)
	}
	msg := &rmq.Message{Topic: p.cfg.GrantsTopic, Body: body}
	msg.SetTag(mq.TagGrant)
	msg.SetKeys(c.ID)
	return p.send(ctx, msg)
}

// PublishGrantStart sends g as a delay message delivered at deliverAt (now, if that has passed).
func (p *Publisher) PublishGrantStart(ctx context.Context, g mq.GrantStart, deliverAt time.Time) error {
	if p.cfg.GrantStartsTopic == "" {
		return fault.Permanent(fmt.Errorf("rocketmq: no grant-starts topic configured"))
	}
	body, err := json.Marshal(g)
	if err != nil {
		return fault.Permanent(err)
	}
	msg := &rmq.Message{Topic: p.cfg.GrantStartsTopic, Body: body}
	msg.SetTag(mq.TagGrantStart)
	msg.SetKeys(g.CampaignID)
	if now := time.Now(); deliverAt.Before(now) {
		deliverAt = now
	}
	msg.SetDelayTimestamp(deliverAt)
	return p.send(ctx, msg)
}

// PublishRebuildWake asks the timer to run its cache rebuild now (mq.TagCacheRebuild). The grant-starts
// topic takes only delay messages, so it is due a second from now.
func (p *Publisher) PublishRebuildWake(ctx context.Context) error {
	if p.cfg.GrantStartsTopic == "" {
		return fault.Permanent(fmt.Errorf("rocketmq: no grant-starts topic configured"))
	}
	msg := &rmq.Message{Topic: p.cfg.GrantStartsTopic, Body: []byte(`{"job":"cache-rebuild"}`)}
	msg.SetTag(mq.TagCacheRebuild)
	msg.SetDelayTimestamp(time.Now().Add(time.Second))
	return p.send(ctx, msg)
}

func (p *Publisher) send(ctx context.Context, msg *rmq.Message) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if _, err := p.producer.Send(ctx, msg); err != nil {
		return fault.Retryable(fmt.Errorf("rocketmq send to %s: %w", msg.Topic, err))
	}
	return nil
}

// Close stops the producer.
func (p *Publisher) Close() error {
	return p.producer.GracefulStop()
}
