// Receipt handles: what a delivery hands the consumer, and the ack, change of invisible time and
// forward to the dead-letter queue that present one.

package rocketmq

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

// A receipt handle names the delivery it came from and when its invisible time ends (as the real
// broker's handle carries its pop time and invisible time); a random nonce makes every delivery's handle
// distinct so that an old handle stops working once the message was redelivered or its invisible
// duration changed. Handles are not logged: a restart invalidates them.
func encodeHandle(group, topic string, off int64, until time.Time) string {
	raw := strings.Join([]string{"2", group, topic, strconv.FormatInt(off, 10), strconv.FormatInt(until.UnixMilli(), 10), newToken()}, "\x00")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeHandle(h string) (group, topic string, off int64, until time.Time, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", "", 0, time.Time{}, false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 6 || parts[0] != "2" {
		return "", "", 0, time.Time{}, false
	}
	off, err = strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", "", 0, time.Time{}, false
	}
	ms, err := strconv.ParseInt(parts[4], 10, 64)
	if err != nil {
		return "", "", 0, time.Time{}, false
	}
	return parts[1], parts[2], off, time.UnixMilli(ms), true
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// liveDeliveryLocked resolves a receipt handle to its in-flight delivery. An unknown, foreign,
// superseded or expired handle is INVALID_RECEIPT_HANDLE, as the proxy answers
// (proxy/src/main/java/org/apache/rocketmq/proxy/processor/ConsumerProcessor.java checks
// ReceiptHandle.isExpired). A message id, when given, must be the handle's message.
func (b *Broker) liveDeliveryLocked(group, topic, messageID, handle string) (*groupCursor, *storedMessage, *delivery, error) {
	g, tp, off, _, ok := decodeHandle(handle)
	if !ok {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "malformed receipt handle")
	}
	if g != group || tp != topic {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "receipt handle belongs to another group or topic")
	}
	t, ok := b.topics[topic]
	if !ok || off < 0 || off >= int64(len(t.msgs)) {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "receipt handle names no message")
	}
	c := b.cursorLocked(group, topic)
	d := c.st[off]
	if d == nil || d.done || d.handle != handle {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "receipt handle is no longer valid")
	}
	if !b.now().Before(d.until) {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "receipt handle has expired")
	}
	m := t.msgs[off]
	if messageID != "" && m.ID != messageID {
		return nil, nil, nil, fail(v2.Code_INVALID_RECEIPT_HANDLE, "receipt handle is for message %s, not %s", m.ID, messageID)
	}
	return c, m, d, nil
}

// doneLocked says whether handle is an unexpired handle of a message of topic that group has finished
// (acknowledged, or dead-lettered). The proxy refuses an expired handle whatever became of its message.
func (b *Broker) doneLocked(group, topic, messageID, handle string) bool {
	g, tp, off, until, ok := decodeHandle(handle)
	if !ok || g != group || tp != topic || !b.now().Before(until) {
		return false
	}
	t, ok := b.topics[topic]
	if !ok || off < 0 || off >= int64(len(t.msgs)) || (messageID != "" && t.msgs[off].ID != messageID) {
		return false
	}
	c := b.cursorLocked(group, topic)
	if off < c.low {
		return true
	}
	d := c.st[off]
	return d != nil && d.done
}

// Ack finishes a delivery for its group.
func (b *Broker) Ack(group, topic, messageID, handle string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, m, _, err := b.liveDeliveryLocked(group, topic, messageID, handle)
	if err != nil {
		if b.doneLocked(group, topic, messageID, handle) {
			// Apache RocketMQ's proxy answers OK to a second ack of an acknowledged message (5.5.0,
			// seen in local/fc's TestBatchAckerOnApacheRocketMQ): acknowledging is idempotent.
			return nil
		}
		return err
	}
	if err := b.persistLocked(false, record{Op: opDone, Group: group, Topic: topic, Offset: m.Offset}); err != nil {
		return err
	}
	c.markDone(m.Offset)
	c.advance(int64(len(b.topics[topic].msgs)))
	b.notifyLocked()
	return nil
}

// ChangeInvisible sets a new invisible duration from now and returns the delivery's new handle.
func (b *Broker) ChangeInvisible(group, topic, messageID, handle string, d time.Duration) (string, error) {
	if d < 0 || d > DefaultMaxInvisible {
		return "", fail(v2.Code_ILLEGAL_INVISIBLE_TIME, "invisible duration %s outside [0, %s]", d, DefaultMaxInvisible)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, m, del, err := b.liveDeliveryLocked(group, topic, messageID, handle)
	if err != nil {
		return "", err
	}
	del.until = b.now().Add(d)
	del.handle = encodeHandle(group, topic, m.Offset, del.until)
	b.notifyLocked()
	return del.handle, nil
}

// ForwardToDLQ moves an in-flight message to the group's DLQ at the consumer's request.
func (b *Broker) ForwardToDLQ(group, topic, messageID, handle string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, m, d, err := b.liveDeliveryLocked(group, topic, messageID, handle)
	if err != nil {
		return err
	}
	return b.persistLocked(true, b.deadLetterLocked(group, m, d)...)
}
