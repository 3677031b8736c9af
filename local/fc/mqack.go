package fc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	rmqmd "github.com/apache/rocketmq-clients/golang/v5/metadata"
	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"google.golang.org/grpc/metadata"
)

// batchAcker acknowledges a delivered batch in one AckMessage call. The RocketMQ 5 protocol takes many
// entries per call (AckMessageRequest.entries), and both the broker emulator and the Apache proxy
// answer each entry (AckMessageActivity acknowledges them all and reports each one's status), but the
// Go client's SimpleConsumer.Ack sends one entry per call. FC's trigger is EventBridge's, not this
// client: acknowledging a ledger batch of 100 in 100 calls was the emulator's cost, 12 % of the stack
// process's CPU in make bench's HTTP grant row, not one production pays.
type batchAcker struct {
	conn     rmq.ClientConn
	svc      v2.MessagingServiceClient
	group    string
	clientID string
	timeout  time.Duration
}

// newBatchAcker dials the broker as the client does (rmq.NewClientConn: the same TLS setting).
func newBatchAcker(endpoint, group, trigger string) (*batchAcker, error) {
	conn, err := rmq.NewClientConn(endpoint, rmq.WithDialTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &batchAcker{
		conn: conn, svc: v2.NewMessagingServiceClient(conn.Conn()), group: group, timeout: 3 * time.Second,
		// A proxy refuses a call without a client id (CLIENT_ID_REQUIRED); acknowledging needs no
		// session, so the id only has to name this sender.
		clientID: fmt.Sprintf("%s@%d@fc-trigger-%s", host, os.Getpid(), trigger),
	}, nil
}

// ack acknowledges batch, one call per topic, and returns the messages it could not (the call failed,
// or the broker did not answer an entry OK) with why. The caller acknowledges those one by one.
func (a *batchAcker) ack(ctx context.Context, batch []*rmq.MessageView) ([]*rmq.MessageView, error) {
	byTopic := make(map[string][]*rmq.MessageView, 1)
	for _, mv := range batch {
		byTopic[mv.GetTopic()] = append(byTopic[mv.GetTopic()], mv)
	}
	var left []*rmq.MessageView
	var errs []error
	for topic, mvs := range byTopic {
		l, err := a.ackTopic(ctx, topic, mvs)
		left = append(left, l...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return left, errors.Join(errs...)
}

func (a *batchAcker) ackTopic(ctx context.Context, topic string, mvs []*rmq.MessageView) ([]*rmq.MessageView, error) {
	req := &v2.AckMessageRequest{Group: &v2.Resource{Name: a.group}, Topic: &v2.Resource{Name: topic},
		Entries: make([]*v2.AckMessageEntry, len(mvs))}
	for i, mv := range mvs {
		req.Entries[i] = &v2.AckMessageEntry{MessageId: mv.GetMessageId(), ReceiptHandle: mv.GetReceiptHandle()}
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx,
		rmqmd.LanguageKey, rmqmd.LanguageValue, rmqmd.ProtocolKey, rmqmd.ProtocolValue,
		rmqmd.VersionKey, rmqmd.VersionValue, rmqmd.ClintID, a.clientID,
		rmqmd.RequestID, newRequestID(), rmqmd.DateTime, time.Now().UTC().Format("20060102T150405Z"))
	resp, err := a.svc.AckMessage(ctx, req)
	if err != nil {
		return mvs, err
	}
	done := make(map[string]bool, len(mvs))
	var refused *v2.Status
	for _, e := range resp.GetEntries() {
		if e.GetStatus().GetCode() == v2.Code_OK {
			done[e.GetReceiptHandle()] = true
		} else {
			refused = e.GetStatus()
		}
	}
	var left []*rmq.MessageView
	for _, mv := range mvs {
		if !done[mv.GetReceiptHandle()] {
			left = append(left, mv)
		}
	}
	if len(left) > 0 {
		if refused == nil {
			return left, fmt.Errorf("%d of %d entries not answered (call status %s)", len(left), len(mvs), resp.GetStatus().GetCode())
		}
		return left, fmt.Errorf("%d of %d entries not acknowledged: %s %s", len(left), len(mvs), refused.GetCode(), refused.GetMessage())
	}
	return nil, nil
}

func (a *batchAcker) close() { _ = a.conn.Close() }
