// Package rocketmq is a local stand-in for an Apache RocketMQ 5 broker and its gRPC proxy: it serves the
// MessagingService of protocol v2 (as vendored by github.com/apache/rocketmq-clients/golang/v5) so that
// the official clients run against it unchanged. It keeps the semantics the functions rely on:
// at-least-once delivery with invisible time, delivery attempts, the dead-letter queue, delay, FIFO by
// message group and transactional half messages with check-back.
//
// The defaults follow the real broker; each names the Apache RocketMQ source it was read from.
package rocketmq

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

// Defaults of the real broker and proxy.
const (
	// remoting/src/main/java/org/apache/rocketmq/remoting/protocol/subscription/SubscriptionGroupConfig.java:
	// retryMaxTimes = 16; proxy/src/main/java/org/apache/rocketmq/proxy/grpc/v2/common/
	// GrpcClientSettingsManager.java sends setMaxAttempts(groupConfig.getRetryMaxTimes() + 1).
	DefaultMaxAttempts = 17
	// proxy/src/main/java/org/apache/rocketmq/proxy/config/ProxyConfig.java: minInvisibleTimeMillsForRecv.
	DefaultMinInvisible = 10 * time.Second
	// ProxyConfig.java: maxInvisibleTimeMills.
	DefaultMaxInvisible = 12 * time.Hour
	// ProxyConfig.java: defaultInvisibleTimeMills, for a receive that names none.
	DefaultInvisible = 60 * time.Second
	// ProxyConfig.java: grpcClientConsumerMinLongPollingTimeoutMillis and ...Max...; see
	// ReceiveMessageActivity.receiveMessage for how a request's polling time is derived from them.
	DefaultMinLongPolling = 5 * time.Second
	DefaultMaxLongPolling = 20 * time.Second
	// ProxyConfig.java: longPollingReserveTimeInMillis.
	longPollingReserve = 100 * time.Millisecond
	// common/src/main/java/org/apache/rocketmq/common/BrokerConfig.java: transactionTimeOut (first
	// check-back of a half message), transactionCheckInterval, transactionCheckMax.
	DefaultTransactionTimeout       = 6 * time.Second
	DefaultTransactionCheckInterval = 30 * time.Second
	DefaultTransactionCheckMax      = 15
	// ProxyConfig.java: maxMessageSize (4 MiB); the client refuses larger bodies too.
	MaxBodySize = 4 * 1024 * 1024
	// ProxyConfig.java: maxDelayTimeMills (1 day).
	MaxDelay = 24 * time.Hour
	// ProxyConfig.java: grpcClientConsumerLongPollingBatchSize.
	maxReceiveBatch = 32
	// common/src/main/java/org/apache/rocketmq/common/topic/TopicValidator.java: TOPIC_MAX_LENGTH,
	// RETRY_OR_DLQ_TOPIC_MAX_LENGTH and GROUP_MAX_LENGTH.
	maxTopicLength    = 127
	maxDLQTopicLength = 255
	maxGroupLength    = 120
	// ProxyConfig.java: userPropertyMaxNum and maxUserPropertySize.
	maxUserProperties    = 128
	maxUserPropertyBytes = 16 * 1024
	// MixAll.DLQ_GROUP_TOPIC_PREFIX.
	DLQPrefix = "%DLQ%"
	// MessageConst.PROPERTY_DLQ_ORIGIN_TOPIC / PROPERTY_DLQ_ORIGIN_MESSAGE_ID.
	PropertyDLQOriginTopic     = "DLQ_ORIGIN_TOPIC"
	PropertyDLQOriginMessageID = "DLQ_ORIGIN_MESSAGE_ID"
)

// consumerBackoff is the group retry schedule the broker hands to push consumers, the default "next"
// of remoting/src/main/java/org/apache/rocketmq/remoting/protocol/subscription/CustomizedRetryPolicy.java.
var consumerBackoff = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute,
	7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour,
}

// maxAttempts is a group's delivery attempts before its dead-letter queue.
func (b *Broker) maxAttempts(group string) int {
	if n := b.cfg.GroupMaxAttempts[group]; n > 0 {
		return n
	}
	return b.cfg.MaxAttempts
}

// RetryBackoff is the real broker's wait before delivery attempt+1 of a message that failed attempt
// (1-based), scaled by the broker's time scale.
func (b *Broker) RetryBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > len(consumerBackoff) {
		attempt = len(consumerBackoff)
	}
	return b.scale(consumerBackoff[attempt-1])
}

// Config sets the broker up. The zero value is the real broker's behaviour, in memory.
type Config struct {
	MaxAttempts  int           // a group's max delivery attempts before the DLQ (default 17)
	MinInvisible time.Duration // shortest invisible duration accepted (default 10s)
	// MinLongPolling is the shortest long poll (default 5s): a receive whose deadline leaves less is
	// refused with BAD_REQUEST, as the proxy refuses it; tests with short-lived consumers lower it.
	MinLongPolling time.Duration
	// MaxLongPolling is the longest long poll (default 20s), and what the broker tells subscribers to
	// ask for (proxy GrpcClientSettingsManager.mergeSubscriptionData): a push consumer's stop waits
	// for its receives in flight, so tests that stop consumers lower it.
	MaxLongPolling time.Duration
	TimeScale      float64     // multiplies retry backoff and transaction check timings (default 1)
	DataDir        string      // empty: in memory
	NoFsync        bool        // skip fsync on send acknowledgement
	Topics         []TopicDecl // topics declared up front, with their message type
	// FIFOGroups are the consumer groups configured as orderly: only they receive a FIFO topic's
	// messages one message group at a time, as on the real broker where ordering is a property of the
	// subscription group (SubscriptionGroupConfig.consumeMessageOrderly).
	FIFOGroups map[string]bool
	// NoAutoCreate refuses unknown topics as a broker with autoCreateTopicEnable=false does
	// (BrokerConfig.autoCreateTopicEnable defaults to true).
	NoAutoCreate bool
	// GroupMaxAttempts overrides MaxAttempts for some groups, as a group's own subscription config does
	// on the real broker (SubscriptionGroupConfig.retryMaxTimes + 1).
	GroupMaxAttempts map[string]int
	Logger           *slog.Logger
	Now              func() time.Time
}

// TopicDecl declares a topic. Type MESSAGE_TYPE_UNSPECIFIED accepts every type, as a MIXED topic does
// (common/.../attribute/TopicMessageType.java).
type TopicDecl struct {
	Name string
	Type v2.MessageType
}

type txState uint8

const (
	txNone txState = iota
	txHalf
	txCommitted
	txRolledBack
	txDiscarded
)

type storedMessage struct {
	Offset    int64             `json:"o"`
	Topic     string            `json:"t"`
	ID        string            `json:"id"`
	Tag       string            `json:"tag,omitempty"`
	Keys      []string          `json:"keys,omitempty"`
	Group     string            `json:"g,omitempty"`
	Props     map[string]string `json:"p,omitempty"`
	Body      []byte            `json:"b"`
	Type      v2.MessageType    `json:"ty"`
	BornAt    time.Time         `json:"born"`
	BornHost  string            `json:"host,omitempty"`
	StoredAt  time.Time         `json:"stored"`
	DeliverAt time.Time         `json:"at,omitempty"`
	TxID      string            `json:"tx,omitempty"`
	Tx        txState           `json:"txs,omitempty"`
	checks    int
	nextCheck time.Time
}

type topicState struct {
	name  string
	typ   v2.MessageType
	msgs  []*storedMessage
	byID  map[string]int64
	byTx  map[string]int64 // transaction id -> offset: a retried send may repeat a message id
	halfs map[int64]bool
}

// delivery is one message's state in one consumer group.
type delivery struct {
	attempt  int32
	inflight bool
	until    time.Time
	handle   string
	done     bool
}

type groupCursor struct {
	low int64 // every offset below low is done for this group
	st  map[int64]*delivery
}

// Broker holds every topic and consumer group. One mutex guards all state: the emulator favours
// obviously correct ordering over throughput.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	store   *store
	topicRE *regexp.Regexp

	mu      sync.Mutex
	topics  map[string]*topicState
	cursors map[string]*groupCursor // key group + "\x00" + topic
	changed chan struct{}           // closed and replaced on every state change that may wake receivers
	clients map[string]*telemetryClient
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New opens a broker; with cfg.DataDir set it replays the log found there.
func New(cfg Config) (*Broker, error) {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MinInvisible <= 0 {
		cfg.MinInvisible = DefaultMinInvisible
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.MaxLongPolling <= 0 {
		cfg.MaxLongPolling = DefaultMaxLongPolling
	}
	if cfg.MinLongPolling <= 0 {
		cfg.MinLongPolling = DefaultMinLongPolling
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Broker{
		cfg: cfg, log: cfg.Logger, now: cfg.Now,
		// common/.../topic/TopicValidator.java: VALID_PATTERN_STR "^[%|a-zA-Z0-9_-]+$".
		topicRE: regexp.MustCompile(`^[%|a-zA-Z0-9_-]+$`),
		topics:  map[string]*topicState{}, cursors: map[string]*groupCursor{},
		changed: make(chan struct{}), clients: map[string]*telemetryClient{}, stop: make(chan struct{}),
	}
	for _, d := range cfg.Topics {
		if !b.validTopic(d.Name) {
			return nil, fmt.Errorf("illegal topic name %q", d.Name)
		}
		b.topics[d.Name] = newTopic(d.Name, d.Type)
	}
	if cfg.DataDir != "" {
		st, err := openStore(cfg.DataDir, !cfg.NoFsync, b.replay)
		if err != nil {
			return nil, err
		}
		b.store = st
	}
	b.wg.Add(1)
	go b.transactionChecker()
	return b, nil
}

// Close stops background work and closes the log.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.stop)
	b.notifyLocked()
	b.mu.Unlock()
	b.wg.Wait()
	if b.store != nil {
		return b.store.close()
	}
	return nil
}

func newTopic(name string, typ v2.MessageType) *topicState {
	return &topicState{name: name, typ: typ, byID: map[string]int64{}, byTx: map[string]int64{}, halfs: map[int64]bool{}}
}

func (b *Broker) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * b.cfg.TimeScale)
}

func (b *Broker) validTopic(name string) bool {
	limit := maxTopicLength
	if strings.HasPrefix(name, DLQPrefix) || strings.HasPrefix(name, "%RETRY%") {
		limit = maxDLQTopicLength
	}
	return name != "" && len(name) <= limit && b.topicRE.MatchString(name)
}

// validGroup follows TopicValidator: the same character set, at most GROUP_MAX_LENGTH.
func (b *Broker) validGroup(name string) bool {
	return name != "" && len(name) <= maxGroupLength && b.topicRE.MatchString(name)
}

func (b *Broker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// statusError is a protocol status the RPC layer returns in the response body, as the proxy does.
type statusError struct {
	code v2.Code
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("%s: %s", e.code, e.msg) }

func fail(code v2.Code, format string, args ...any) error {
	return &statusError{code: code, msg: fmt.Sprintf(format, args...)}
}

func codeOf(err error) (v2.Code, string) {
	var se *statusError
	if errors.As(err, &se) {
		return se.code, se.msg
	}
	return v2.Code_INTERNAL_SERVER_ERROR, err.Error()
}

// topicLocked finds a topic, creating it on first use unless auto-creation is off.
func (b *Broker) topicLocked(name string, create bool) (*topicState, error) {
	if !b.validTopic(name) {
		return nil, fail(v2.Code_ILLEGAL_TOPIC, "illegal topic name %q", name)
	}
	if t, ok := b.topics[name]; ok {
		return t, nil
	}
	if !create || (b.cfg.NoAutoCreate && !strings.HasPrefix(name, DLQPrefix)) {
		return nil, fail(v2.Code_TOPIC_NOT_FOUND, "topic %q does not exist", name)
	}
	t := newTopic(name, v2.MessageType_MESSAGE_TYPE_UNSPECIFIED)
	b.topics[name] = t
	return t, nil
}

// acceptTypes is what QueryRoute advertises; the client refuses to send a type the queue does not take.
func (t *topicState) acceptTypes() []v2.MessageType {
	if t.typ == v2.MessageType_MESSAGE_TYPE_UNSPECIFIED {
		return []v2.MessageType{v2.MessageType_NORMAL, v2.MessageType_FIFO, v2.MessageType_DELAY, v2.MessageType_TRANSACTION}
	}
	return []v2.MessageType{t.typ}
}

// Route answers QueryRoute: the topic exists (or is created) and is served by this broker.
func (b *Broker) Route(topic string) (*topicState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topicLocked(topic, true)
}

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

// Send stores messages of one topic; with a data folder they are on disk before it returns.
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
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fail(v2.Code_INTERNAL_SERVER_ERROR, "broker is shutting down")
	}
	t, err := b.topicLocked(msgs[0].Topic, true)
	if err != nil {
		return nil, err
	}
	if t.typ != v2.MessageType_MESSAGE_TYPE_UNSPECIFIED {
		for _, m := range msgs {
			if m.Type != t.typ {
				return nil, fail(v2.Code_MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "topic %s takes %v messages, not %v", t.name, t.typ, m.Type)
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
	if b.store != nil {
		recs := make([]record, 0, len(stored))
		for _, sm := range stored {
			recs = append(recs, record{Op: opSend, Msg: sm})
		}
		if err := b.store.append(true, recs...); err != nil {
			return nil, fail(v2.Code_INTERNAL_SERVER_ERROR, "append to the log: %v", err)
		}
	}
	for _, sm := range stored {
		b.appendLocked(t, sm, now)
		out = append(out, SendResult{ID: sm.ID, TxID: sm.TxID, Offset: sm.Offset})
	}
	b.notifyLocked()
	return out, nil
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

func (b *Broker) persistLocked(sync bool, recs ...record) error {
	if b.store == nil {
		return nil
	}
	if err := b.store.append(sync, recs...); err != nil {
		return fail(v2.Code_INTERNAL_SERVER_ERROR, "append to the log: %v", err)
	}
	return nil
}

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
		d.handle = encodeHandle(in.Group, t.name, off)
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

// A receipt handle names the delivery it came from; a random nonce makes every delivery's handle
// distinct so that an old handle stops working once the message was redelivered or its invisible
// duration changed.
func encodeHandle(group, topic string, off int64) string {
	raw := strings.Join([]string{"1", group, topic, strconv.FormatInt(off, 10), newToken()}, "\x00")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeHandle(h string) (group, topic string, off int64, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", "", 0, false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 5 || parts[0] != "1" {
		return "", "", 0, false
	}
	off, err = strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	return parts[1], parts[2], off, true
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
	g, tp, off, ok := decodeHandle(handle)
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

// Ack finishes a delivery for its group.
func (b *Broker) Ack(group, topic, messageID, handle string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, m, _, err := b.liveDeliveryLocked(group, topic, messageID, handle)
	if err != nil {
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
	del.handle = encodeHandle(group, topic, m.Offset)
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

// TopicStats reports what a topic holds, for tests and the stack's health output.
type TopicStats struct {
	Messages int
	Half     int
}

// Stats of one topic.
func (b *Broker) Stats(topic string) TopicStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[topic]
	if !ok {
		return TopicStats{}
	}
	return TopicStats{Messages: len(t.msgs), Half: len(t.halfs)}
}

// Topics lists the topic names.
func (b *Broker) Topics() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
