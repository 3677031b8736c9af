// Telemetry: the client's settings stream, the long-poll time derived from it, and the
// transaction check-backs sent down it.

package rocketmq

import (
	"context"
	"errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"io"
	"sync"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"google.golang.org/protobuf/types/known/durationpb"
)

// telemetryClient is a client's open Telemetry stream and what its settings said.
type telemetryClient struct {
	id             string
	typ            v2.ClientType
	topics         map[string]bool
	group          string
	requestTimeout time.Duration
	stream         v2.MessagingService_TelemetryServer
	sendMu         sync.Mutex
	closed         bool // the handler returned: its stream must not be written any more
}

func (c *telemetryClient) send(cmd *v2.TelemetryCommand) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.closed {
		return errors.New("telemetry stream closed")
	}
	return c.stream.Send(cmd)
}

func (c *telemetryClient) close() {
	c.sendMu.Lock()
	c.closed = true
	c.sendMu.Unlock()
}

func (s *service) Telemetry(stream v2.MessagingService_TelemetryServer) error {
	id := clientID(stream.Context())
	if id == "" {
		return status.Error(codes.InvalidArgument, "x-mq-client-id metadata is required")
	}
	tc := &telemetryClient{id: id, stream: stream, topics: map[string]bool{}}
	defer tc.close()
	defer s.b.dropClient(id, tc)
	for {
		cmd, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		settings := cmd.GetSettings()
		if settings == nil {
			continue // thread stack traces and verify results need no answer
		}
		reply, err := s.b.applySettings(tc, settings)
		if err != nil {
			code, msg := codeOf(err)
			_ = tc.send(&v2.TelemetryCommand{Status: &v2.Status{Code: code, Message: msg}})
			continue
		}
		if err := tc.send(&v2.TelemetryCommand{Status: ok(), Command: &v2.TelemetryCommand_Settings{Settings: reply}}); err != nil {
			return err
		}
	}
}

// applySettings records a client's settings and answers with the broker's: the publishing limits for
// producers, the retry policy and long-polling for consumers
// (proxy/.../grpc/v2/common/GrpcClientSettingsManager.java).
func (b *Broker) applySettings(tc *telemetryClient, in *v2.Settings) (*v2.Settings, error) {
	out := &v2.Settings{ClientType: in.ClientType, AccessPoint: in.AccessPoint, RequestTimeout: in.RequestTimeout, UserAgent: in.UserAgent}
	b.mu.Lock()
	defer b.mu.Unlock()
	tc.typ = in.GetClientType()
	if in.RequestTimeout != nil {
		tc.requestTimeout = in.RequestTimeout.AsDuration()
	}
	switch pub := in.GetPubSub().(type) {
	case *v2.Settings_Publishing:
		for _, t := range pub.Publishing.GetTopics() {
			tc.topics[t.GetName()] = true
		}
		out.PubSub = &v2.Settings_Publishing{Publishing: &v2.Publishing{
			Topics: pub.Publishing.GetTopics(), MaxBodySize: MaxBodySize, ValidateMessageType: true,
		}}
		// Producer retries: ProxyConfig's grpc producer backoff, exponential 10 ms to 1 s, x2, 3 attempts.
		out.BackoffPolicy = &v2.RetryPolicy{MaxAttempts: 3, Strategy: &v2.RetryPolicy_ExponentialBackoff{ExponentialBackoff: &v2.ExponentialBackoff{
			Initial: durationpb.New(10 * time.Millisecond), Max: durationpb.New(time.Second), Multiplier: 2,
		}}}
	case *v2.Settings_Subscription:
		sub := pub.Subscription
		if !b.validGroup(sub.GetGroup().GetName()) {
			return nil, fail(v2.Code_ILLEGAL_CONSUMER_GROUP, "illegal consumer group %q", sub.GetGroup().GetName())
		}
		tc.group = sub.GetGroup().GetName()
		fifo := b.cfg.FIFOGroups[tc.group]
		batch := int32(maxReceiveBatch)
		out.PubSub = &v2.Settings_Subscription{Subscription: &v2.Subscription{
			Group: sub.Group, Subscriptions: sub.Subscriptions, Fifo: &fifo, ReceiveBatchSize: &batch,
			LongPollingTimeout: durationpb.New(b.cfg.MaxLongPolling),
		}}
		next := make([]*durationpb.Duration, len(consumerBackoff))
		for i := range consumerBackoff {
			next[i] = durationpb.New(b.RetryBackoff(i + 1))
		}
		out.BackoffPolicy = &v2.RetryPolicy{MaxAttempts: int32(b.maxAttempts(tc.group)), Strategy: &v2.RetryPolicy_CustomizedBackoff{CustomizedBackoff: &v2.CustomizedBackoff{Next: next}}}
	default:
		return nil, fail(v2.Code_UNRECOGNIZED_CLIENT_TYPE, "settings carry neither publishing nor subscription")
	}
	b.clients[tc.id] = tc
	return out, nil
}

func (b *Broker) dropClient(id string, only *telemetryClient) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.clients[id]; ok && (only == nil || cur == only) {
		delete(b.clients, id)
	}
}

// pollingTime derives a receive's long poll from the time its caller left it, as
// ReceiveMessageActivity.receiveMessage does: what remains less half the client's request timeout,
// clamped to [min, max] long polling; a deadline that leaves less than the minimum is refused.
func (b *Broker) pollingTime(ctx context.Context, client string, asked *durationpb.Duration) (time.Duration, error) {
	b.mu.Lock()
	reqTimeout := 3 * time.Second // the Go client's default request timeout
	if c, ok := b.clients[client]; ok && c.requestTimeout > 0 {
		reqTimeout = c.requestTimeout
	}
	minLP, maxLP := b.cfg.MinLongPolling, b.cfg.MaxLongPolling
	b.mu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		return minLP, nil
	}
	remaining := time.Until(dl)
	polling := remaining - reqTimeout/2
	if asked != nil {
		// A push consumer names its long poll (client process_queue.go receiveMessage), and the proxy
		// takes it as asked (ReceiveMessageActivity.java: request.hasLongPollingTimeout()).
		polling = asked.AsDuration()
	}
	polling = min(max(polling, minLP), maxLP)
	if polling > remaining {
		if remaining < minLP {
			return 0, fail(v2.Code_BAD_REQUEST, "The deadline time remaining is not enough for polling, please check network condition")
		}
		polling = remaining
	}
	// Answer a little before the deadline so the reply still reaches the client in time.
	return max(polling-longPollingReserve, 0), nil
}

// transactionChecker asks a producer of the topic about half messages left open, on the broker's
// schedule, and discards them after transactionCheckMax checks
// (broker/.../transaction/queue/TransactionalMessageServiceImpl.java: needDiscard).
func (b *Broker) transactionChecker() {
	defer b.wg.Done()
	tick := time.NewTicker(max(b.scale(100*time.Millisecond), 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		type check struct {
			to  *telemetryClient
			cmd *v2.TelemetryCommand
		}
		var checks []check
		b.mu.Lock()
		now := b.now()
		for _, t := range b.topics {
			for off := range t.halfs {
				m := t.msgs[off]
				if m.pending || now.Before(m.nextCheck) {
					continue
				}
				if m.checks >= DefaultTransactionCheckMax {
					b.log.Info("half message discarded after max checks", "topic", t.name, "id", m.ID, "checks", m.checks)
					if err := b.persistLocked(false, record{Op: opTx, Topic: t.name, Offset: off, Tx: txDiscarded}); err != nil {
						b.log.Error("persist discard", "err", err)
					}
					b.setTxLocked(t, m, txDiscarded)
					continue
				}
				m.checks++
				m.nextCheck = now.Add(b.scale(DefaultTransactionCheckInterval))
				if to := b.producerForLocked(t.name); to != nil {
					checks = append(checks, check{to: to, cmd: &v2.TelemetryCommand{
						Status: ok(),
						Command: &v2.TelemetryCommand_RecoverOrphanedTransactionCommand{RecoverOrphanedTransactionCommand: &v2.RecoverOrphanedTransactionCommand{
							Message: toProto(m, nil), TransactionId: m.TxID,
						}},
					}})
				}
			}
		}
		b.mu.Unlock()
		for _, c := range checks {
			if err := c.to.send(c.cmd); err != nil {
				b.log.Debug("transaction check-back not delivered", "client", c.to.id, "err", err)
			}
		}
	}
}

func (b *Broker) producerForLocked(topic string) *telemetryClient {
	var any *telemetryClient
	for _, c := range b.clients {
		if c.typ != v2.ClientType_PRODUCER {
			continue
		}
		if c.topics[topic] {
			return c
		}
		if any == nil {
			any = c
		}
	}
	return any
}
