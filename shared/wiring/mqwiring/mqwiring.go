// Package mqwiring builds the RocketMQ clients a function main needs from its configuration. It is
// apart from package wiring so that the functions that never talk to the broker (ledger, cachesync)
// link none of the client: it and its gRPC, protobuf and OpenTelemetry dependencies were 8 MB of
// each binary.
package mqwiring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"

	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/timer"
	"github.com/benefit-issuance/benefits/shared/wiring"
)

// EnvBackstopGroup names the timer's own consumer group on the grants topic (template.yml sets it).
const EnvBackstopGroup = "GRANTS_BACKSTOP_GROUP"

// EnvBackstopEmptyReceives is how many empty receives in a row a rebuild's drain needs: the number of
// brokers serving the grants topic, since a RocketMQ 5 proxy serves each receive from one of them.
const EnvBackstopEmptyReceives = "GRANTS_BACKSTOP_EMPTY_RECEIVES"

// BackstopEmptyReceives reads EnvBackstopEmptyReceives (default 1).
func BackstopEmptyReceives() (int, error) {
	v := strings.TrimSpace(os.Getenv(EnvBackstopEmptyReceives))
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s must be a positive integer, got %q", EnvBackstopEmptyReceives, v)
	}
	return n, nil
}

// DefaultBackstopGroup is the backstop's group when EnvBackstopGroup is unset. It must differ from the
// ledger trigger's group (GID_benefit_ledger): the backstop sees every grant independently of it.
const DefaultBackstopGroup = "GID_benefit_grants_backstop"

// GrantConsumer is a SimpleConsumer on the grants topic: the timer's grant backstop (timer.GrantSource).
type GrantConsumer struct{ c rmq.SimpleConsumer }

// BackstopConfig names the broker, the group and the topic of a GrantConsumer.
type BackstopConfig struct {
	Endpoint, AccessKey, SecretKey, Namespace string
	Group, Topic                              string
	// Await is the receive's long-poll request. A real proxy refuses a receive whose deadline leaves
	// less than its 5 s minimum long poll after half the client's 3 s request timeout, so 2 s is the
	// least it takes; a local broker with a lower minimum takes less.
	Await time.Duration
}

// GrantBackstop is the timer's backstop consumer from the configuration, started on its first receive.
func GrantBackstop(cfg config.Config) *LazyGrantSource {
	group := strings.TrimSpace(os.Getenv(EnvBackstopGroup))
	if group == "" {
		group = DefaultBackstopGroup
	}
	return &LazyGrantSource{start: func() (*GrantConsumer, error) {
		return wiring.RetryStartUp("rocketmq backstop consumer", func() (*GrantConsumer, error) {
			return NewGrantConsumer(BackstopConfig{Endpoint: cfg.RocketMQ, AccessKey: cfg.RocketMQAccess, SecretKey: cfg.RocketMQSecret,
				Namespace: cfg.RocketMQNS, Group: group, Topic: cfg.TopicGrants, Await: 2 * time.Second})
		})
	}}
}

// LazyGrantSource starts its consumer on the first receive. Most of the timer's jobs never receive,
// and a consumer's start waits for the broker's settings (about a second here), which every cold
// start of the timer paid before its job could run.
type LazyGrantSource struct {
	start func() (*GrantConsumer, error)
	mu    sync.Mutex
	c     *GrantConsumer
}

// Receive implements timer.GrantSource, starting the consumer first if this is the first receive; a
// start that fails is tried again on the next.
func (l *LazyGrantSource) Receive(ctx context.Context, max int, invisible time.Duration) ([]timer.GrantDelivery, error) {
	l.mu.Lock()
	if l.c == nil {
		c, err := l.start()
		if err != nil {
			l.mu.Unlock()
			return nil, fault.Retryable(fmt.Errorf("start the grant backstop's consumer: %w", err))
		}
		l.c = c
	}
	c := l.c
	l.mu.Unlock()
	return c.Receive(ctx, max, invisible)
}

// NewGrantConsumer starts a consumer of bc.Group on bc.Topic, grant-tagged messages only (as the
// ledger trigger's filter).
func NewGrantConsumer(bc BackstopConfig) (*GrantConsumer, error) {
	if bc.Await <= 0 {
		bc.Await = 2 * time.Second
	}
	rmqclient.ConfigureClientLogging("")
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: bc.Endpoint, NameSpace: bc.Namespace, ConsumerGroup: bc.Group,
		Credentials: &credentials.SessionCredentials{AccessKey: bc.AccessKey, AccessSecret: bc.SecretKey}},
		rmq.WithSimpleAwaitDuration(bc.Await),
		rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{bc.Topic: rmq.NewFilterExpression(mq.TagGrant)}))
	if err != nil {
		return nil, fault.Permanent(err)
	}
	if err := c.Start(); err != nil {
		return nil, fault.Retryable(err)
	}
	return &GrantConsumer{c: c}, nil
}

// Receive implements timer.GrantSource: the broker's "no new message" is an empty answer.
func (g *GrantConsumer) Receive(ctx context.Context, max int, invisible time.Duration) ([]timer.GrantDelivery, error) {
	mvs, err := g.c.Receive(ctx, int32(max), invisible)
	if err != nil {
		var st *rmq.ErrRpcStatus
		if errors.As(err, &st) && st.Code == int32(v2.Code_MESSAGE_NOT_FOUND) {
			return nil, nil
		}
		return nil, fault.Retryable(err)
	}
	out := make([]timer.GrantDelivery, len(mvs))
	for i, mv := range mvs {
		out[i] = timer.GrantDelivery{ID: mv.GetMessageId(), Body: mv.GetBody(), Ack: func(ctx context.Context) error {
			return g.c.Ack(ctx, mv)
		}}
	}
	return out, nil
}

// Close stops the consumer.
func (g *GrantConsumer) Close() error { return g.c.GracefulStop() }

// Publisher starts the RocketMQ producer.
func Publisher(cfg config.Config) (*rmqclient.Publisher, error) {
	return wiring.RetryStartUp("rocketmq producer", func() (*rmqclient.Publisher, error) {
		return rmqclient.NewPublisher(rmqclient.Config{
			Endpoint: cfg.RocketMQ, AccessKey: cfg.RocketMQAccess, SecretKey: cfg.RocketMQSecret, Namespace: cfg.RocketMQNS,
			ChangesTopic: cfg.TopicChanges, GrantsTopic: cfg.TopicGrants, GrantStartsTopic: cfg.TopicStarts,
		})
	})
}
