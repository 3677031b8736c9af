// Receiving: a group's cursor over a topic, pops with their invisible time, messages given back
// and the dead-letter queue.

package rocketmq

import (
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

func cursorKey(group, topic string) string { return group + "\x00" + topic }

func (b *Broker) cursorLocked(group, topic string) *groupCursor {
	k := cursorKey(group, topic)
	c, ok := b.cursors[k]
	if !ok {
		// A new group starts at the head of the queue: the broker's PopMessageProcessor.getInitOffset
		// does so while the queue's first message is still in memory (initPopOffsetByCheckMsgInMem),
		// which is always the case for the short-lived topics of a local run.
		c = &groupCursor{st: map[int64]*delivery{}}
		b.cursors[k] = c
	}
	return c
}

// ReceiveInput is a decoded ReceiveMessage request.
type ReceiveInput struct {
	Group     string
	Topic     string
	Filter    string
	SQLFilter bool // SQL92 filters are not emulated: refused rather than misread as tags
	Batch     int
	Invisible time.Duration
	Wait      time.Duration // long polling
}

// Delivered is one message handed to a consumer.
type Delivered struct {
	Msg           *storedMessage
	Attempt       int32
	ReceiptHandle string
	Invisible     time.Duration
}

// Receive pops up to Batch visible messages for the group, waiting up to Wait for one to appear.
func (b *Broker) Receive(in ReceiveInput, done <-chan struct{}) ([]Delivered, error) {
	if !b.validGroup(in.Group) {
		return nil, fail(v2.Code_ILLEGAL_CONSUMER_GROUP, "illegal consumer group %q", in.Group)
	}
	if in.Invisible < b.cfg.MinInvisible || in.Invisible > DefaultMaxInvisible {
		return nil, fail(v2.Code_ILLEGAL_INVISIBLE_TIME, "invisible duration %s outside [%s, %s]", in.Invisible, b.cfg.MinInvisible, DefaultMaxInvisible)
	}
	if in.Batch <= 0 {
		return nil, fail(v2.Code_BAD_REQUEST, "batch size must be positive")
	}
	if in.Batch > maxReceiveBatch {
		in.Batch = maxReceiveBatch
	}
	if in.SQLFilter {
		return nil, fail(v2.Code_ILLEGAL_FILTER_EXPRESSION, "SQL92 filter expressions are not supported by the local broker")
	}
	filter, err := parseTagFilter(in.Filter)
	if err != nil {
		return nil, fail(v2.Code_ILLEGAL_FILTER_EXPRESSION, "%v", err)
	}
	deadline := time.Now().Add(in.Wait)
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, fail(v2.Code_INTERNAL_SERVER_ERROR, "broker is shutting down")
		}
		t, err := b.topicLocked(in.Topic, true)
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		got, wake := b.popLocked(t, in, filter)
		changed := b.changed
		b.mu.Unlock()
		if len(got) > 0 {
			return got, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		if !wake.IsZero() {
			if w := wake.Sub(b.now()); w < left {
				left = max(w, time.Millisecond)
			}
		}
		timer := time.NewTimer(left)
		select {
		case <-changed:
		case <-timer.C:
		case <-done:
			timer.Stop()
			return nil, nil
		}
		timer.Stop()
	}
}

// popLocked walks the group's undone messages in offset order. It returns the deliveries and the
// earliest future time at which something may become deliverable.
func (b *Broker) popLocked(t *topicState, in ReceiveInput, filter tagFilter) ([]Delivered, time.Time) {
	now := b.now()
	c := b.cursorLocked(in.Group, t.name)
	var out []Delivered
	var wake time.Time
	soon := func(at time.Time) {
		if wake.IsZero() || at.Before(wake) {
			wake = at
		}
	}
	blocked := map[string]bool{}
	var recs []record
	for off := c.low; off < int64(len(t.msgs)) && len(out) < in.Batch; off++ {
		m := t.msgs[off]
		d := c.st[off]
		if d != nil && d.done {
			continue
		}
		if m.pending {
			// Not on disk yet: its send has not been acknowledged. Later messages of its FIFO group
			// wait behind it.
			if m.Type == v2.MessageType_FIFO {
				blocked[m.Group] = true
			}
			continue
		}
		switch m.Tx {
		case txHalf:
			continue
		case txRolledBack, txDiscarded:
			c.markDone(off)
			continue
		}
		if !filter.match(m.Tag) {
			// A message the group's subscription filters out is consumed for that group.
			c.markDone(off)
			continue
		}
		fifo := m.Type == v2.MessageType_FIFO && b.cfg.FIFOGroups[in.Group]
		if fifo && blocked[m.Group] {
			continue
		}
		if d != nil && d.inflight && now.Before(d.until) {
			if fifo {
				blocked[m.Group] = true
			}
			soon(d.until)
			continue
		}
		if !m.DeliverAt.IsZero() && now.Before(m.DeliverAt) {
			if fifo {
				blocked[m.Group] = true
			}
			soon(m.DeliverAt)
			continue
		}
		if d == nil {
			d = &delivery{}
			c.st[off] = d
		}
		if int(d.attempt) >= b.maxAttempts(in.Group) {
			// proxy/.../grpc/v2/consumer/ReceiveMessageActivity.java filters a popped message whose
			// reconsume times reached the group's max into the DLQ instead of delivering it.
			recs = append(recs, b.deadLetterLocked(in.Group, m, d)...)
			continue
		}
		d.attempt++
		d.inflight = true
		d.until = now.Add(in.Invisible)
		d.handle = encodeHandle(in.Group, t.name, off, d.until)
		recs = append(recs, record{Op: opAttempt, Group: in.Group, Topic: t.name, Offset: off, Attempt: d.attempt})
		out = append(out, Delivered{Msg: m, Attempt: d.attempt, ReceiptHandle: d.handle, Invisible: in.Invisible})
		if fifo {
			blocked[m.Group] = true
		}
	}
	c.advance(int64(len(t.msgs)))
	if len(recs) > 0 {
		if err := b.persistLocked(false, recs...); err != nil {
			b.log.Error("persist deliveries", "err", err)
		}
	}
	return out, wake
}

// giveBack nacks deliveries that never reached the consumer: visible again after 1 s, the attempt
// spent, as proxy/src/main/java/org/apache/rocketmq/proxy/grpc/v2/consumer/
// ReceiveMessageResponseStreamWriter.java does (processThrowableWhenWriteMessage, NACK_INVISIBLE_TIME).
func (b *Broker) giveBack(group string, ds []Delivered) {
	b.mu.Lock()
	defer b.mu.Unlock()
	until := b.now().Add(time.Second)
	for _, d := range ds {
		c := b.cursorLocked(group, d.Msg.Topic)
		if del := c.st[d.Msg.Offset]; del != nil && !del.done && del.handle == d.ReceiptHandle {
			del.until, del.handle = until, ""
		}
	}
	b.notifyLocked()
}

func (c *groupCursor) markDone(off int64) {
	d := c.st[off]
	if d == nil {
		d = &delivery{}
		c.st[off] = d
	}
	d.done, d.inflight = true, false
}

func (c *groupCursor) advance(end int64) {
	for c.low < end {
		d := c.st[c.low]
		if d == nil || !d.done {
			return
		}
		delete(c.st, c.low)
		c.low++
	}
}

// deadLetterLocked copies m into %DLQ%<group> (keeping its id, as the broker's DLQ re-put does) and
// finishes it for the group.
func (b *Broker) deadLetterLocked(group string, m *storedMessage, d *delivery) []record {
	dlq, _ := b.topicLocked(DLQPrefix+group, true)
	props := map[string]string{}
	for k, v := range m.Props {
		props[k] = v
	}
	props[PropertyDLQOriginTopic] = m.Topic
	props[PropertyDLQOriginMessageID] = m.ID
	cp := &storedMessage{
		Topic: dlq.name, ID: m.ID, Tag: m.Tag, Keys: m.Keys, Props: props, Body: m.Body,
		Type: v2.MessageType_NORMAL, BornAt: m.BornAt, BornHost: m.BornHost, StoredAt: b.now(),
	}
	b.appendLocked(dlq, cp, b.now())
	c := b.cursorLocked(group, m.Topic)
	c.markDone(m.Offset)
	d.done = true
	b.log.Info("message moved to the dead-letter queue", "group", group, "topic", m.Topic, "id", m.ID, "attempts", d.attempt)
	b.notifyLocked()
	return []record{{Op: opSend, Msg: cp}, {Op: opDone, Group: group, Topic: m.Topic, Offset: m.Offset}}
}
