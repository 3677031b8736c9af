// Package rocketmq is a local stand-in for an Apache RocketMQ 5 broker and its gRPC proxy: it serves the
// MessagingService of protocol v2 (as vendored by github.com/apache/rocketmq-clients/golang/v5) so that
// the official clients run against it unchanged. It keeps the semantics the functions rely on:
// at-least-once delivery with invisible time, delivery attempts, the dead-letter queue, delay, FIFO by
// message group and transactional half messages with check-back.
//
// The defaults follow the real broker; each names the Apache RocketMQ source it was read from.
package rocketmq

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
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
	pending   bool // written to the log, not yet synced: not delivered, not checked back
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

func (b *Broker) persistLocked(sync bool, recs ...record) error {
	if b.store == nil {
		return nil
	}
	if err := b.store.append(sync, recs...); err != nil {
		return fail(v2.Code_INTERNAL_SERVER_ERROR, "append to the log: %v", err)
	}
	return nil
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
