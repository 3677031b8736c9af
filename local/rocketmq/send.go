// Sending and transactions: validation as the proxy does it, the append to a topic's log, and the
// resolution of half messages.

package rocketmq

import (
	"strings"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

// SendInput is one message of a SendMessage request, already decoded.
type SendInput struct {
	ID        string
	Topic     string
	Tag       string
	Keys      []string
	Group     string
	Props     map[string]string
	Body      []byte
	Type      v2.MessageType
	BornAt    time.Time
	BornHost  string
	DeliverAt time.Time
}

// SendResult is the broker's answer for one stored message.
type SendResult struct {
	ID     string
	TxID   string
	Offset int64
}

func validateSend(in SendInput, now time.Time) error {
	if in.ID == "" {
		return fail(v2.Code_ILLEGAL_MESSAGE_ID, "message id is required")
	}
	if len(in.Body) > MaxBodySize {
		return fail(v2.Code_MESSAGE_BODY_TOO_LARGE, "body of %d bytes exceeds %d", len(in.Body), MaxBodySize)
	}
	if in.Tag != "" && (strings.TrimSpace(in.Tag) == "" || strings.Contains(in.Tag, "|")) {
		return fail(v2.Code_ILLEGAL_MESSAGE_TAG, "illegal tag %q", in.Tag)
	}
	if len(in.Props) > maxUserProperties {
		return fail(v2.Code_MESSAGE_PROPERTIES_TOO_LARGE, "%d user properties, at most %d", len(in.Props), maxUserProperties)
	}
	size := 0
	for k, v := range in.Props {
		size += len(k) + len(v)
	}
	if size > maxUserPropertyBytes {
		return fail(v2.Code_MESSAGE_PROPERTIES_TOO_LARGE, "user properties of %d bytes, at most %d", size, maxUserPropertyBytes)
	}
	for _, k := range in.Keys {
		if strings.TrimSpace(k) == "" {
			return fail(v2.Code_ILLEGAL_MESSAGE_KEY, "message keys must not be blank")
		}
	}
	switch in.Type {
	case v2.MessageType_FIFO:
		if in.Group == "" || len(in.Group) > 64 {
			return fail(v2.Code_ILLEGAL_MESSAGE_GROUP, "a FIFO message needs a message group of 1-64 characters")
		}
	case v2.MessageType_DELAY:
		if in.DeliverAt.IsZero() {
			return fail(v2.Code_ILLEGAL_DELIVERY_TIME, "a DELAY message needs a delivery timestamp")
		}
		if in.DeliverAt.Sub(now) > MaxDelay {
			return fail(v2.Code_ILLEGAL_DELIVERY_TIME, "delivery timestamp more than %s ahead", MaxDelay)
		}
	case v2.MessageType_NORMAL, v2.MessageType_TRANSACTION:
	default:
		return fail(v2.Code_BAD_REQUEST, "unknown message type %v", in.Type)
	}
	if in.Type != v2.MessageType_FIFO && in.Group != "" {
		return fail(v2.Code_MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "message group set on a %v message", in.Type)
	}
	if in.Type != v2.MessageType_DELAY && !in.DeliverAt.IsZero() {
		return fail(v2.Code_MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "delivery timestamp set on a %v message", in.Type)
	}
	return nil
}

// Send stores messages of one topic; with a data folder they are on disk before it returns. The fsync
// runs outside the broker's lock, so receives, acknowledgements and other sends go on meanwhile, and
// sends that arrive during one fsync share the next (store.syncTo). Until theirs is done the messages
// hold their offsets but are not delivered.
func (b *Broker) Send(msgs []SendInput) ([]SendResult, error) {
	if len(msgs) == 0 {
		return nil, fail(v2.Code_BAD_REQUEST, "no messages to send")
	}
	now := b.now()
	for _, m := range msgs {
		if m.Topic != msgs[0].Topic {
			return nil, fail(v2.Code_BAD_REQUEST, "messages of one request must share a topic")
		}
		if err := validateSend(m, now); err != nil {
			return nil, err
		}
	}
	out, stored, seq, err := b.sendLocked(msgs, now)
	if err != nil || seq == 0 {
		return out, err
	}
	if err := b.commit(stored, seq); err != nil {
		return nil, fail(v2.Code_INTERNAL_SERVER_ERROR, "sync the log: %v", err)
	}
	return out, nil
}

// commit waits until the log append seq is on disk, then makes its messages deliverable.
func (b *Broker) commit(stored []*storedMessage, seq int64) error {
	err := b.store.syncTo(seq)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, sm := range stored {
		// Even when the fsync failed: the records were written and a restart may find them, so the
		// producer's retry is a duplicate either way, which at-least-once allows.
		sm.pending = false
	}
	b.notifyLocked()
	return err
}

// sendLocked writes and appends the messages under the broker's lock; seq is the log append to sync
// (0 without a durable log).
func (b *Broker) sendLocked(msgs []SendInput, now time.Time) ([]SendResult, []*storedMessage, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil, 0, fail(v2.Code_INTERNAL_SERVER_ERROR, "broker is shutting down")
	}
	t, err := b.topicLocked(msgs[0].Topic, true)
	if err != nil {
		return nil, nil, 0, err
	}
	if t.typ != v2.MessageType_MESSAGE_TYPE_UNSPECIFIED {
		for _, m := range msgs {
			if m.Type != t.typ {
				return nil, nil, 0, fail(v2.Code_MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "topic %s takes %v messages, not %v", t.name, t.typ, m.Type)
			}
		}
	}
	out := make([]SendResult, 0, len(msgs))
	stored := make([]*storedMessage, 0, len(msgs))
	for _, in := range msgs {
		sm := &storedMessage{
			Offset: int64(len(t.msgs)) + int64(len(stored)), Topic: t.name, ID: in.ID, Tag: in.Tag, Keys: in.Keys,
			Group: in.Group, Props: in.Props, Body: in.Body, Type: in.Type, BornAt: in.BornAt, BornHost: in.BornHost,
			StoredAt: now, DeliverAt: in.DeliverAt,
		}
		if in.Type == v2.MessageType_TRANSACTION {
			sm.Tx = txHalf
			sm.TxID = newToken()
		}
		stored = append(stored, sm)
	}
	var seq int64
	if b.store != nil {
		recs := make([]record, 0, len(stored))
		for _, sm := range stored {
			recs = append(recs, record{Op: opSend, Msg: sm})
		}
		if seq, err = b.store.write(recs...); err != nil {
			return nil, nil, 0, fail(v2.Code_INTERNAL_SERVER_ERROR, "append to the log: %v", err)
		}
	}
	// Without an fsync to wait for, the messages are deliverable now and there is nothing to commit.
	if seq != 0 && !b.store.fsync {
		seq = 0
	}
	for _, sm := range stored {
		sm.pending = seq != 0
		b.appendLocked(t, sm, now)
		out = append(out, SendResult{ID: sm.ID, TxID: sm.TxID, Offset: sm.Offset})
	}
	if seq == 0 {
		b.notifyLocked()
	}
	return out, stored, seq, nil
}

func (b *Broker) appendLocked(t *topicState, sm *storedMessage, now time.Time) {
	sm.Offset = int64(len(t.msgs))
	t.msgs = append(t.msgs, sm)
	t.byID[sm.ID] = sm.Offset
	if sm.TxID != "" {
		t.byTx[sm.TxID] = sm.Offset
	}
	if sm.Tx == txHalf {
		t.halfs[sm.Offset] = true
		// First check-back once the transaction has been open for transactionTimeOut.
		sm.nextCheck = sm.StoredAt.Add(b.scale(DefaultTransactionTimeout))
		if sm.nextCheck.Before(now) {
			sm.nextCheck = now
		}
	}
}

// EndTransaction commits or rolls back a half message; UNSPECIFIED leaves it for the next check-back.
func (b *Broker) EndTransaction(topic, messageID, txID string, res v2.TransactionResolution) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[topic]
	if !ok {
		return fail(v2.Code_TOPIC_NOT_FOUND, "topic %q does not exist", topic)
	}
	off, ok := t.byTx[txID]
	if !ok {
		return fail(v2.Code_INVALID_TRANSACTION_ID, "no half message with transaction id %q in %s", txID, topic)
	}
	m := t.msgs[off]
	if m.ID != messageID {
		return fail(v2.Code_INVALID_TRANSACTION_ID, "transaction id %q does not match message %q", txID, messageID)
	}
	if m.Tx != txHalf {
		return nil // already resolved; a late second resolution is harmless
	}
	var next txState
	switch res {
	case v2.TransactionResolution_COMMIT:
		next = txCommitted
	case v2.TransactionResolution_ROLLBACK:
		next = txRolledBack
	default:
		return nil
	}
	if err := b.persistLocked(true, record{Op: opTx, Topic: topic, Offset: off, Tx: next}); err != nil {
		return err
	}
	b.setTxLocked(t, m, next)
	return nil
}

func (b *Broker) setTxLocked(t *topicState, m *storedMessage, s txState) {
	m.Tx = s
	delete(t.halfs, m.Offset)
	if s == txCommitted {
		// A committed message becomes visible at commit time (it is re-put into the real topic then).
		m.StoredAt = b.now()
	}
	b.notifyLocked()
}
