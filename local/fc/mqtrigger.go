package fc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"

	"github.com/benefit-issuance/benefits/local/fctemplate"
)

// The EventBridge retry strategies, as FC documents them: BACKOFF_RETRY retries 3 times 10-20 s
// apart; EXPONENTIAL_DECAY_RETRY retries 176 times, 1 s doubling up to 512 s (a day in all).
const (
	backoffRetries          = 3
	exponentialDecayRetries = 176
	exponentialDecayCap     = 512 * time.Second
)

// mqTrigger consumes a RocketMQ topic for one function as EventBridge's RocketMQ source does: it
// collects a batch per the batch window, invokes the function with CloudEvents, acknowledges only
// after success, and otherwise retries on the trigger's schedule, then dead-letters.
type mqTrigger struct {
	e        *Emulator
	f        *function
	name     string
	src      fctemplate.SourceRocketMQParameters
	run      fctemplate.RunOptions
	workers  int // deliveryOption.concurrency: batches in flight at once
	consumer rmq.SimpleConsumer
	acker    *batchAcker // nil: each message is acknowledged through the consumer
	dlq      rmq.Producer
	dlqTopic string
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

var dlqNameRE = regexp.MustCompile(`[^%|a-zA-Z0-9_-]`)

// dlqTopicOf maps a dead-letter queue ARN to a topic on the local broker: its last path segment
// (acs:mns:region:account:/queues/NAME or acs:mq:...:topic/NAME).
func dlqTopicOf(arn string) string {
	i := strings.LastIndexAny(arn, "/:")
	name := dlqNameRE.ReplaceAllString(arn[i+1:], "-")
	return strings.Trim(name, "-")
}

func (e *Emulator) startMQTrigger(f *function, name string, ec fctemplate.EventBridgeTriggerConfig, src *fctemplate.SourceRocketMQParameters) (*mqTrigger, error) {
	if e.cfg.BrokerEndpoint == "" {
		return nil, errors.New("no RocketMQ endpoint configured for the local stack")
	}
	t := &mqTrigger{e: e, f: f, name: name, src: *src, done: make(chan struct{})}
	if ec.RunOptions != nil {
		t.run = *ec.RunOptions
	}
	// The one limit FC 3.0 reads on how many invocations a trigger runs at once. Unset, the platform
	// picks; locally that is one, the most conservative reading.
	t.workers = 1
	if ec.EventSinkConfig != nil && ec.EventSinkConfig.DeliveryOption.Concurrency > 0 {
		t.workers = ec.EventSinkConfig.DeliveryOption.Concurrency
	}
	filter := src.Tag
	if filter == "" {
		filter = "*"
	}
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: e.cfg.BrokerEndpoint, ConsumerGroup: src.GroupID, Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(time.Second),
		rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{src.Topic: rmq.NewFilterExpression(filter)}))
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	t.consumer = c
	if t.run.DeadLetterQueue != nil && t.run.DeadLetterQueue.Arn != "" {
		t.dlqTopic = dlqTopicOf(fctemplate.Interpolate(t.run.DeadLetterQueue.Arn, e.cfg.Template.Vars, func(k string) string { return e.cfg.Env[k] }))
		if t.dlqTopic == "" {
			_ = c.GracefulStop()
			return nil, fmt.Errorf("dead-letter queue ARN %q names no queue", t.run.DeadLetterQueue.Arn)
		}
		p, err := rmq.NewProducer(&rmq.Config{Endpoint: e.cfg.BrokerEndpoint, Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics(t.dlqTopic))
		if err != nil {
			_ = c.GracefulStop()
			return nil, err
		}
		if err := p.Start(); err != nil {
			_ = c.GracefulStop()
			return nil, err
		}
		t.dlq = p
	}
	if a, err := newBatchAcker(e.cfg.BrokerEndpoint, src.GroupID, name); err == nil {
		t.acker = a
	} else {
		e.log.Warn("trigger acknowledges one message per call: no connection of its own to the broker", "trigger", name, "err", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	t.cancel = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(t.done)
		var workers sync.WaitGroup
		for range t.workers {
			workers.Go(func() { t.loop(ctx) })
		}
		workers.Wait()
	}()
	return t, nil
}

// DLQTopic is where a trigger puts events that exhausted their retries.
func (e *Emulator) DLQTopic(function, trigger string) string {
	for _, c := range e.consumers {
		if c.f.def.FunctionName == function && c.name == trigger {
			return c.dlqTopic
		}
	}
	return ""
}

func (t *mqTrigger) stop() {
	t.once.Do(func() {
		t.cancel()
		<-t.done
		_ = t.consumer.GracefulStop()
		if t.acker != nil {
			t.acker.close()
		}
		if t.dlq != nil {
			_ = t.dlq.GracefulStop()
		}
	})
}

func (t *mqTrigger) batchWindow() (int, time.Duration) {
	n, window := 1, time.Duration(0)
	if bw := t.run.BatchWindow; bw != nil {
		if bw.CountBasedWindow > 0 {
			n = bw.CountBasedWindow
		}
		window = time.Duration(bw.TimeBasedWindow) * time.Second
	}
	return n, window
}

func (t *mqTrigger) invisible() time.Duration {
	_, window := t.batchWindow()
	d := time.Duration(t.f.def.Timeout)*time.Second + window + 5*time.Second
	return max(d, 10*time.Second)
}

func emptyReceive(err error) bool {
	var st *rmq.ErrRpcStatus
	return errors.As(err, &st) && st.Code == int32(v2.Code_MESSAGE_NOT_FOUND)
}

// loop is one worker: it collects a batch and delivers it, so a trigger with concurrency N has at most
// N invocations in flight.
func (t *mqTrigger) loop(ctx context.Context) {
	for ctx.Err() == nil {
		batch := t.collect(ctx)
		if len(batch) == 0 {
			continue
		}
		t.deliver(ctx, batch)
	}
}

// collect receives up to the count window, waiting at most the time window after the first message.
func (t *mqTrigger) collect(ctx context.Context) []*rmq.MessageView {
	n, window := t.batchWindow()
	var batch []*rmq.MessageView
	var until time.Time
	for ctx.Err() == nil && len(batch) < n {
		if len(batch) > 0 && (window == 0 || time.Now().After(until)) {
			break
		}
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if len(batch) > 0 {
			// Filling a batch: wait no longer than its window (a receive long-polls for seconds).
			if time.Until(until) < 150*time.Millisecond {
				break
			}
			rctx, cancel = context.WithDeadline(ctx, until)
		}
		mvs, err := t.consumer.Receive(rctx, int32(min(n-len(batch), 32)), t.invisible())
		cancel()
		if len(batch) > 0 && rctx.Err() != nil {
			batch = append(batch, mvs...)
			break
		}
		if err != nil && !emptyReceive(err) {
			if ctx.Err() == nil {
				t.e.log.Debug("trigger receive failed", "function", t.f.def.FunctionName, "trigger", t.name, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			continue
		}
		if len(batch) == 0 && len(mvs) > 0 {
			until = time.Now().Add(window)
		}
		batch = append(batch, mvs...)
	}
	return batch
}

func (t *mqTrigger) deliver(ctx context.Context, batch []*rmq.MessageView) {
	attempt := int32(1)
	for _, mv := range batch {
		attempt = max(attempt, mv.GetDeliveryAttempt())
	}
	payload, err := t.cloudEvents(batch, attempt)
	if err != nil {
		t.e.log.Error("cannot build the trigger event", "err", err)
		return
	}
	_, err = t.f.invoke(ctx, payload, int(attempt-1))
	if ctx.Err() != nil {
		return // shutting down: the messages come back after their invisible time
	}
	if err == nil {
		t.ack(batch)
		return
	}
	retries, strategy := t.retryPolicy()
	t.e.log.Info("trigger invocation failed", "function", t.f.def.FunctionName, "trigger", t.name, "attempt", attempt, "err", err)
	// Each event keeps its own retry count: one that failed for the first time is not dead-lettered
	// because it shared a batch with one on its last attempt.
	for _, mv := range batch {
		a := int(mv.GetDeliveryAttempt())
		if a <= retries {
			if err := t.consumer.ChangeInvisibleDuration(mv, t.backoff(strategy, a)); err != nil {
				t.e.log.Debug("change invisible duration", "err", err)
			}
			continue
		}
		if strings.EqualFold(t.run.ErrorsTolerance, "NONE") {
			// The stream blocks: keep retrying at the longest interval rather than skip the event.
			_ = t.consumer.ChangeInvisibleDuration(mv, t.backoff(strategy, retries))
			continue
		}
		t.deadLetter(ctx, mv, err)
	}
}

// deadLetter parks an event that exhausted its retries and acknowledges it right after, so a DLQ
// send that fails part-way through a batch does not park the others twice.
func (t *mqTrigger) deadLetter(ctx context.Context, mv *rmq.MessageView, cause error) {
	if t.dlq == nil {
		t.e.log.Warn("event dropped after its last retry: no dead-letter queue", "function", t.f.def.FunctionName, "trigger", t.name, "id", mv.GetMessageId())
		t.ack([]*rmq.MessageView{mv})
		return
	}
	msg := &rmq.Message{Topic: t.dlqTopic, Body: mv.GetBody()}
	if tag := mv.GetTag(); tag != nil && *tag != "" {
		msg.SetTag(*tag)
	}
	if keys := mv.GetKeys(); len(keys) > 0 {
		msg.SetKeys(keys...)
	}
	for k, v := range mv.GetProperties() {
		msg.AddProperty(k, v)
	}
	msg.AddProperty("ORIGIN_TOPIC", mv.GetTopic())
	// Not ORIGIN_MESSAGE_ID: the broker reserves that name (MessageConst.STRING_HASH_SET) and the
	// real proxy refuses the send with ILLEGAL_MESSAGE_PROPERTY_KEY.
	msg.AddProperty("SOURCE_MESSAGE_ID", mv.GetMessageId())
	msg.AddProperty("LAST_ERROR", truncate(cause.Error(), 512))
	if _, err := t.dlq.Send(ctx, msg); err != nil {
		// Not acknowledged: it comes back and is dead-lettered next time.
		t.e.log.Warn("dead-letter send failed", "err", err)
		return
	}
	t.e.log.Warn("event dead-lettered after its last retry", "function", t.f.def.FunctionName, "trigger", t.name, "dlq", t.dlqTopic, "id", mv.GetMessageId())
	t.ack([]*rmq.MessageView{mv})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// ack acknowledges a batch in one call where it can, and what that call left one message at a time.
func (t *mqTrigger) ack(batch []*rmq.MessageView) {
	if len(batch) > 1 && t.acker != nil {
		var err error
		if batch, err = t.acker.ack(context.Background(), batch); err != nil {
			t.e.log.Info("batch acknowledgement incomplete; the rest one by one", "function", t.f.def.FunctionName, "trigger", t.name, "err", err)
		}
	}
	for _, mv := range batch {
		if err := t.consumer.Ack(context.Background(), mv); err != nil {
			t.e.log.Debug("ack failed", "err", err)
		}
	}
}

func (t *mqTrigger) retryPolicy() (int, string) {
	strategy := "BACKOFF_RETRY"
	if rs := t.run.RetryStrategy; rs != nil {
		strategy = strings.ToUpper(rs.PushRetryStrategy)
	}
	// FC 3.0 reads the strategy alone; the number of retries follows from it.
	retries := backoffRetries
	if strategy == fctemplate.RetryExponentialDecay {
		retries = exponentialDecayRetries
	}
	if cap := t.e.cfg.MaxRetries; cap > 0 && cap < retries {
		retries = cap
	}
	return retries, strategy
}

func (t *mqTrigger) backoff(strategy string, attempt int) time.Duration {
	var d time.Duration
	if strategy == fctemplate.RetryExponentialDecay {
		d = time.Second << min(attempt-1, 9)
		d = min(d, exponentialDecayCap)
	} else {
		d = 10*time.Second + rand.N(10*time.Second)
	}
	return time.Duration(float64(d) * t.e.cfg.TimeScale)
}

// cloudEvent is the event EventBridge's RocketMQ source delivers (see shared/fcevents testdata).
type cloudEvent struct {
	ID                string         `json:"id"`
	Source            string         `json:"source"`
	SpecVersion       string         `json:"specversion"`
	Type              string         `json:"type"`
	DataContentType   string         `json:"datacontenttype"`
	Subject           string         `json:"subject"`
	Time              string         `json:"time"`
	AliyunAccountID   string         `json:"aliyunaccountid"`
	AliyunPublishTime string         `json:"aliyunpublishtime"`
	AliyunEventBus    string         `json:"aliyuneventbusname"`
	AliyunRegionID    string         `json:"aliyunregionid"`
	Data              cloudEventData `json:"data"`
}

type cloudEventData struct {
	Topic            string            `json:"topic"`
	SystemProperties systemProperties  `json:"systemProperties"`
	UserProperties   map[string]string `json:"userProperties"`
	Body             string            `json:"body"`
}

// systemProperties are those EventBridge's RocketMQ source sets, numbers as numbers. A struct rather
// than a map: encoding a batch then neither boxes nor sorts each event's keys (the trigger's encoding
// of ledger batches was a fifth of the stack process's CPU while the ledger drained a backlog).
type systemProperties struct {
	UniqKey          string `json:"UNIQ_KEY"`
	ConsumeStartTime int64  `json:"CONSUME_START_TIME"`
	MsgRegion        string `json:"MSG_REGION"`
	InstanceID       string `json:"INSTANCE_ID"`
	TraceOn          string `json:"TRACE_ON"`
	ReconsumeTimes   string `json:"RECONSUME_TIMES"`
	BornTimestamp    int64  `json:"BORN_TIMESTAMP"`
	Tags             string `json:"TAGS,omitempty"`
	Keys             string `json:"KEYS,omitempty"`
}

// delivered is what the trigger takes from a received message to build its event.
type delivered struct {
	ID, Topic, Tag string
	Keys           []string
	Props          map[string]string
	Body           []byte
	Born           time.Time
}

// cloudEvent is the event for one message, as EventBridge's RocketMQ source shapes it: numeric system
// properties stay numbers, as FC sends them.
func (t *mqTrigger) cloudEvent(m delivered, attempt int32, now time.Time) cloudEvent {
	source := "RocketMQ-Function-" + t.name
	sp := systemProperties{
		UniqKey: m.ID, ConsumeStartTime: now.UnixMilli(), MsgRegion: t.e.cfg.Region,
		InstanceID: t.src.InstanceId, TraceOn: "true", ReconsumeTimes: strconv.Itoa(int(attempt - 1)),
		BornTimestamp: m.Born.UnixMilli(), Tags: m.Tag, Keys: strings.Join(m.Keys, " "),
	}
	props := m.Props
	if props == nil {
		props = map[string]string{}
	}
	return cloudEvent{
		ID: newRequestID(), Source: source, SpecVersion: "1.0", Type: "mq:Topic:SendMessage",
		DataContentType: "application/json; charset=utf-8",
		Subject:         fmt.Sprintf("acs:mq:%s:%s:%s%%%s", t.e.cfg.Region, t.e.cfg.AccountID, t.src.InstanceId, m.Topic),
		Time:            m.Born.UTC().Format(time.RFC3339Nano), AliyunAccountID: t.e.cfg.AccountID,
		AliyunPublishTime: now.Format(time.RFC3339Nano), AliyunEventBus: source, AliyunRegionID: t.e.cfg.Region,
		Data: cloudEventData{Topic: m.Topic, SystemProperties: sp, UserProperties: props, Body: string(m.Body)},
	}
}

func (t *mqTrigger) cloudEvents(batch []*rmq.MessageView, attempt int32) ([]byte, error) {
	now := time.Now().UTC()
	evs := make([]cloudEvent, 0, len(batch))
	for _, mv := range batch {
		m := delivered{ID: mv.GetMessageId(), Topic: mv.GetTopic(), Keys: mv.GetKeys(), Props: mv.GetProperties(), Body: mv.GetBody()}
		if born := mv.GetBornTimestamp(); born != nil {
			m.Born = *born
		}
		if tag := mv.GetTag(); tag != nil {
			m.Tag = *tag
		}
		evs = append(evs, t.cloudEvent(m, attempt, now))
	}
	// In event-streaming mode FC delivers a JSON array, even of one event.
	return json.Marshal(evs)
}
