package rocketmq_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"

	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
)

// Every test drives the broker through the official Go client only.

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rocketmq-client-logs")
	if err != nil {
		panic(err)
	}
	rmqclient.ConfigureClientLogging(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A receive long-polls for what its deadline leaves less half the client's 3 s request timeout
// (about 1.6 s with the 100 ms await the tests use), so invisible times must outlast one poll.
const testInvisible = 2 * time.Second

// startBroker runs a broker for the rest of the test.
func startBroker(t *testing.T, cfg rocketmq.Config) (*rocketmq.Broker, string) {
	t.Helper()
	b, srv := openBroker(t, cfg)
	t.Cleanup(func() { srv.Close(); b.Close() })
	return b, srv.Addr()
}

// openBroker runs a broker the test stops itself (to restart one on the same data). It lowers the two
// minimums a stock proxy enforces (10 s invisible, 5 s long poll) so that short-lived test consumers
// are not refused; every other setting is the real broker's.
func openBroker(t *testing.T, cfg rocketmq.Config) (*rocketmq.Broker, *rocketmq.Server) {
	t.Helper()
	if cfg.MinInvisible == 0 {
		cfg.MinInvisible = 100 * time.Millisecond
	}
	if cfg.MinLongPolling == 0 {
		cfg.MinLongPolling = 100 * time.Millisecond
	}
	b, err := rocketmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rocketmq.Listen(b, "127.0.0.1:0")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return b, srv
}

func newProducer(t *testing.T, addr string, opts ...rmq.ProducerOption) rmq.Producer {
	t.Helper()
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: addr, Credentials: &credentials.SessionCredentials{}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.GracefulStop() })
	return p
}

func newConsumer(t *testing.T, addr, group string, subs map[string]string) rmq.SimpleConsumer {
	t.Helper()
	exprs := map[string]*rmq.FilterExpression{}
	for topic, expr := range subs {
		exprs[topic] = rmq.NewFilterExpression(expr)
	}
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: addr, ConsumerGroup: group, Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(100*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(exprs))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.GracefulStop() })
	return c
}

func send(t *testing.T, p rmq.Producer, msg *rmq.Message) string {
	t.Helper()
	r, err := p.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return r[0].MessageID
}

func isEmpty(err error) bool {
	var st *rmq.ErrRpcStatus
	return errors.As(err, &st) && st.Code == int32(v2.Code_MESSAGE_NOT_FOUND)
}

// receive polls until n messages arrived or the wait is over.
func receive(t *testing.T, c rmq.SimpleConsumer, n int, invisible, wait time.Duration) []*rmq.MessageView {
	t.Helper()
	var got []*rmq.MessageView
	deadline := time.Now().Add(wait)
	for len(got) < n && time.Now().Before(deadline) {
		mvs, err := c.Receive(context.Background(), int32(n-len(got)), invisible)
		if err != nil && !isEmpty(err) {
			t.Fatalf("receive: %v", err)
		}
		got = append(got, mvs...)
	}
	return got
}

// poll returns the first non-empty batch, or nothing once the wait is over.
func poll(t *testing.T, c rmq.SimpleConsumer, n int, invisible, wait time.Duration) []*rmq.MessageView {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		mvs, err := c.Receive(context.Background(), int32(n), invisible)
		if err != nil && !isEmpty(err) {
			t.Fatalf("receive: %v", err)
		}
		if len(mvs) > 0 {
			return mvs
		}
	}
	return nil
}

func bodies(mvs []*rmq.MessageView) []string {
	out := make([]string, len(mvs))
	for i, mv := range mvs {
		out[i] = string(mv.GetBody())
	}
	return out
}

func ackAll(t *testing.T, c rmq.SimpleConsumer, mvs []*rmq.MessageView) {
	t.Helper()
	for _, mv := range mvs {
		if err := c.Ack(context.Background(), mv); err != nil {
			t.Fatalf("ack %s: %v", mv.GetMessageId(), err)
		}
	}
}

func TestSendReceiveAckKeepsPropertiesAndEveryMessage(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("orders"))
	c := newConsumer(t, addr, "GID_orders", map[string]string{"orders": "*"})

	msg := &rmq.Message{Topic: "orders", Body: []byte("sync")}
	msg.SetTag("created")
	msg.SetKeys("order-1", "user-9")
	msg.AddProperty("trace", "abc")
	id := send(t, p, msg)

	var asyncErr atomic.Value
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		p.SendAsync(context.Background(), &rmq.Message{Topic: "orders", Body: []byte(fmt.Sprintf("async-%d", i))},
			func(_ context.Context, _ []*rmq.SendReceipt, err error) {
				if err != nil {
					asyncErr.Store(err)
				}
				wg.Done()
			})
	}
	wg.Wait()
	if err, _ := asyncErr.Load().(error); err != nil {
		t.Fatalf("async send: %v", err)
	}

	got := receive(t, c, 21, 5*time.Second, 5*time.Second)
	if len(got) != 21 {
		t.Fatalf("received %d messages, want 21", len(got))
	}
	first := got[0]
	if first.GetMessageId() != id || string(first.GetBody()) != "sync" || first.GetTag() == nil || *first.GetTag() != "created" {
		t.Fatalf("first message = id %s body %q tag %v, want %s sync created", first.GetMessageId(), first.GetBody(), first.GetTag(), id)
	}
	if strings.Join(first.GetKeys(), ",") != "order-1,user-9" || first.GetProperties()["trace"] != "abc" {
		t.Fatalf("keys %v properties %v lost", first.GetKeys(), first.GetProperties())
	}
	if first.GetDeliveryAttempt() != 1 {
		t.Fatalf("first delivery attempt = %d, want 1", first.GetDeliveryAttempt())
	}
	seen := map[string]bool{}
	for _, b := range bodies(got) {
		seen[b] = true
	}
	for i := range 20 {
		if !seen[fmt.Sprintf("async-%d", i)] {
			t.Fatalf("async-%d never delivered", i)
		}
	}
	ackAll(t, c, got)
	if more := receive(t, c, 1, time.Second, 700*time.Millisecond); len(more) != 0 {
		t.Fatalf("acknowledged messages came back: %v", bodies(more))
	}
}

func TestInvisibleTimeRedeliversWithTheAttemptCounted(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	c := newConsumer(t, addr, "GID_t", map[string]string{"t": "*"})
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})

	first := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(first) != 1 || first[0].GetDeliveryAttempt() != 1 {
		t.Fatalf("first delivery: %d messages", len(first))
	}
	if early := receive(t, c, 1, testInvisible, 100*time.Millisecond); len(early) != 0 {
		t.Fatal("message visible again before its invisible time ended")
	}
	again := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(again) != 1 || again[0].GetDeliveryAttempt() != 2 {
		t.Fatalf("redelivery: got %d messages, attempt %d; want 1 message, attempt 2", len(again), attemptOf(again))
	}
	// The first delivery's handle is superseded: the broker refuses an ack with it (the Go client
	// v5.1.2 does not report the refusal, so the proof is that the message comes back).
	_ = c.Ack(context.Background(), first[0])
	third := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(third) != 1 || third[0].GetDeliveryAttempt() != 3 {
		t.Fatalf("after a stale ack: got %d messages, attempt %d; want the message again, attempt 3", len(third), attemptOf(third))
	}
	ackAll(t, c, third)
	if after := receive(t, c, 1, testInvisible, 700*time.Millisecond); len(after) != 0 {
		t.Fatal("an acknowledged message came back")
	}
}

// Acknowledging an acknowledged message again is answered OK while its handle is unexpired, as Apache
// RocketMQ's proxy answers it (the Go client does not report an ack's refusal, so the broker is asked
// directly); a handle that names another group's or another message, or has expired, is refused.
func TestAckingAnAcknowledgedMessageAgainIsOK(t *testing.T) {
	b, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	c := newConsumer(t, addr, "GID_t", map[string]string{"t": "*"})
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("y")})
	got := receive(t, c, 2, testInvisible, 3*time.Second)
	if len(got) != 2 {
		t.Fatalf("received %d of 2", len(got))
	}
	// The later message first: finished while the earlier one is still in flight, then both finished.
	for _, mv := range []*rmq.MessageView{got[1], got[0]} {
		for i := range 2 {
			if err := b.Ack("GID_t", "t", mv.GetMessageId(), mv.GetReceiptHandle()); err != nil {
				t.Fatalf("ack %d of %s: %v", i+1, mv.GetBody(), err)
			}
		}
	}
	if err := b.Ack("GID_other", "t", got[0].GetMessageId(), got[0].GetReceiptHandle()); err == nil {
		t.Fatal("another group's ack with this group's handle was taken")
	}
	if err := b.Ack("GID_t", "t", got[1].GetMessageId(), got[0].GetReceiptHandle()); err == nil {
		t.Fatal("an ack naming another message than its handle was taken")
	}
	if more := receive(t, c, 1, testInvisible, testInvisible+500*time.Millisecond); len(more) != 0 {
		t.Fatalf("acknowledged messages came back: %v", bodies(more))
	}
	// The proxy refuses an expired handle, whatever became of its message.
	if err := b.Ack("GID_t", "t", got[0].GetMessageId(), got[0].GetReceiptHandle()); err == nil {
		t.Fatal("an ack with an expired handle was taken")
	}
}

func attemptOf(mvs []*rmq.MessageView) int32 {
	if len(mvs) == 0 {
		return 0
	}
	return mvs[0].GetDeliveryAttempt()
}

func TestChangeInvisibleDurationHandsOutANewHandle(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	c := newConsumer(t, addr, "GID_t", map[string]string{"t": "*"})
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})
	got := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(got) != 1 {
		t.Fatal("no message")
	}
	old := got[0].GetReceiptHandle()
	if err := c.ChangeInvisibleDuration(got[0], 3*testInvisible); err != nil {
		t.Fatal(err)
	}
	if got[0].GetReceiptHandle() == old {
		t.Fatal("ChangeInvisibleDuration kept the old receipt handle")
	}
	// Still invisible after the original invisible time would have expired.
	if back := receive(t, c, 1, testInvisible, testInvisible+500*time.Millisecond); len(back) != 0 {
		t.Fatal("message came back although its invisible time was extended")
	}
	ackAll(t, c, got)
}

func TestExpiredReceiptHandleCannotAck(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	c := newConsumer(t, addr, "GID_t", map[string]string{"t": "*"})
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})
	got := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(got) != 1 {
		t.Fatal("no message")
	}
	time.Sleep(testInvisible + 100*time.Millisecond)
	_ = c.Ack(context.Background(), got[0]) // refused by the broker: the handle has expired
	back := receive(t, c, 1, testInvisible, 3*time.Second)
	if len(back) != 1 || back[0].GetDeliveryAttempt() != 2 {
		t.Fatalf("after an ack with an expired handle: %d messages, attempt %d; want the message back, attempt 2", len(back), attemptOf(back))
	}
	ackAll(t, c, back)
}

func TestMaxAttemptsMovesTheMessageToTheDLQ(t *testing.T) {
	b, addr := startBroker(t, rocketmq.Config{MaxAttempts: 3})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	c := newConsumer(t, addr, "GID_fails", map[string]string{"t": "*"})
	msg := &rmq.Message{Topic: "t", Body: []byte("poison")}
	msg.SetTag("bad")
	id := send(t, p, msg)
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("fine")})

	attempts := map[int32]bool{}
	deadline := time.Now().Add(30 * time.Second)
	fineAcked := false
	for time.Now().Before(deadline) && (!fineAcked || b.Stats("%DLQ%GID_fails").Messages == 0) {
		for _, mv := range poll(t, c, 2, testInvisible, 400*time.Millisecond) {
			if string(mv.GetBody()) == "fine" {
				ackAll(t, c, []*rmq.MessageView{mv})
				fineAcked = true
				continue
			}
			attempts[mv.GetDeliveryAttempt()] = true // never acked: the consumer keeps failing
		}
	}
	if len(attempts) != 3 || !attempts[1] || !attempts[2] || !attempts[3] {
		t.Fatalf("delivery attempts seen %v, want exactly 1, 2, 3", attempts)
	}
	if !fineAcked {
		t.Fatal("the message behind the poison one was never delivered")
	}
	dlq := newConsumer(t, addr, "GID_dlq_reader", map[string]string{"%DLQ%GID_fails": "*"})
	dead := receive(t, dlq, 1, time.Second, 5*time.Second)
	if len(dead) != 1 || dead[0].GetMessageId() != id || string(dead[0].GetBody()) != "poison" {
		t.Fatalf("DLQ holds %v, want the poison message %s", bodies(dead), id)
	}
	// Its origin is in SystemProperties.dead_letter_queue, as the proxy sends it (convert_test.go), and
	// not among the user properties (the Go client does not show dead_letter_queue).
	if _, ok := dead[0].GetProperties()[rocketmq.PropertyDLQOriginTopic]; ok || dead[0].GetTag() == nil || *dead[0].GetTag() != "bad" {
		t.Fatalf("DLQ message lost its tag or shows its origin as a user property: %v", dead[0].GetProperties())
	}
	ackAll(t, dlq, dead)
	// Re-sending from the DLQ delivers the message to the group again.
	send(t, p, &rmq.Message{Topic: "t", Body: dead[0].GetBody()})
	back := receive(t, c, 1, time.Second, 3*time.Second)
	if len(back) != 1 || string(back[0].GetBody()) != "poison" || back[0].GetDeliveryAttempt() != 1 {
		t.Fatalf("re-sent message: %v", bodies(back))
	}
}

func TestFIFOHoldsTheGroupBehindAnUnacknowledgedMessage(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{MaxAttempts: 2, Topics: []rocketmq.TopicDecl{{Name: "fifo", Type: v2.MessageType_FIFO}},
		FIFOGroups: map[string]bool{"GID_fifo": true}})
	p := newProducer(t, addr, rmq.WithTopics("fifo"))
	c := newConsumer(t, addr, "GID_fifo", map[string]string{"fifo": "*"})
	for _, body := range []string{"a1", "a2", "a3", "b1"} {
		m := &rmq.Message{Topic: "fifo", Body: []byte(body)}
		m.SetMessageGroup(body[:1])
		send(t, p, m)
	}
	var order []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(order) < 3 {
		for _, mv := range poll(t, c, 4, testInvisible, 300*time.Millisecond) {
			body := string(mv.GetBody())
			order = append(order, fmt.Sprintf("%s#%d", body, mv.GetDeliveryAttempt()))
			if body == "a2" {
				continue // fails every time: a3 must wait until a2 is dead-lettered
			}
			ackAll(t, c, []*rmq.MessageView{mv})
		}
	}
	for time.Now().Before(deadline) && !contains(order, "a3#1") {
		for _, mv := range poll(t, c, 4, testInvisible, 300*time.Millisecond) {
			order = append(order, fmt.Sprintf("%s#%d", mv.GetBody(), mv.GetDeliveryAttempt()))
			if string(mv.GetBody()) != "a2" {
				ackAll(t, c, []*rmq.MessageView{mv})
			}
		}
	}
	var groupA []string
	for _, o := range order {
		if strings.HasPrefix(o, "a") {
			groupA = append(groupA, o)
		}
	}
	if want := "a1#1 a2#1 a2#2 a3#1"; strings.Join(groupA, " ") != want {
		t.Fatalf("group a delivered as %v, want %s", groupA, want)
	}
	if !contains(order, "b1#1") {
		t.Fatalf("group b was blocked by group a: %v", order)
	}
}

// A group not configured as orderly gets a FIFO topic's messages without waiting, as on the real
// broker.
func TestFIFOMessagesToAnUnorderedGroupAreNotHeldBack(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{Topics: []rocketmq.TopicDecl{{Name: "fifo", Type: v2.MessageType_FIFO}}})
	p := newProducer(t, addr, rmq.WithTopics("fifo"))
	c := newConsumer(t, addr, "GID_unordered", map[string]string{"fifo": "*"})
	for _, body := range []string{"a1", "a2", "a3"} {
		m := &rmq.Message{Topic: "fifo", Body: []byte(body)}
		m.SetMessageGroup("a")
		send(t, p, m)
	}
	if got := receive(t, c, 3, 5*time.Second, 3*time.Second); len(got) != 3 {
		t.Fatalf("an unordered group received %d of 3 unacknowledged FIFO messages", len(got))
	}
}

func TestSQLFilterIsRefusedNotMisread(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("t"))
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: addr, ConsumerGroup: "GID_sql", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(100*time.Millisecond),
		rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{"t": rmq.NewFilterExpressionWithType("a > 1", rmq.SQL92)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.GracefulStop()
	_, err = c.Receive(context.Background(), 1, time.Second)
	var st *rmq.ErrRpcStatus
	if !errors.As(err, &st) || st.Code != int32(v2.Code_ILLEGAL_FILTER_EXPRESSION) {
		t.Fatalf("SQL92 receive = %v, want ILLEGAL_FILTER_EXPRESSION", err)
	}
	// The refusal consumed nothing: the group still gets the message with a tag filter.
	c2 := newConsumer(t, addr, "GID_sql", map[string]string{"t": "*"})
	if got := receive(t, c2, 1, time.Second, 3*time.Second); len(got) != 1 {
		t.Fatal("the message was lost to the refused SQL filter")
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestDelayMessageWaitsForItsDeliveryTime(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("delay"))
	c := newConsumer(t, addr, "GID_delay", map[string]string{"delay": "*"})
	at := time.Now().Add(3 * time.Second)
	m := &rmq.Message{Topic: "delay", Body: []byte("later")}
	m.SetDelayTimestamp(at)
	send(t, p, m)
	if early := receive(t, c, 1, 5*time.Second, time.Second); len(early) != 0 {
		t.Fatal("delay message delivered before its time")
	}
	got := receive(t, c, 1, 5*time.Second, 5*time.Second)
	if len(got) != 1 {
		t.Fatal("delay message never delivered")
	}
	if now := time.Now(); now.Before(at) {
		t.Fatalf("delivered at %s, before %s", now, at)
	}
	ackAll(t, c, got)
}

func TestTransactionCommitRollbackAndCheckBack(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{TimeScale: 0.01})
	var checked sync.Map
	checker := &rmq.TransactionChecker{Check: func(mv *rmq.MessageView) rmq.TransactionResolution {
		checked.Store(string(mv.GetBody()), true)
		if string(mv.GetBody()) == "unknown-then-commit" {
			return rmq.COMMIT
		}
		return rmq.ROLLBACK
	}}
	p := newProducer(t, addr, rmq.WithTopics("tx"), rmq.WithTransactionChecker(checker))
	c := newConsumer(t, addr, "GID_tx", map[string]string{"tx": "*"})

	sendTx := func(body string, end func(rmq.Transaction) error) {
		tx := p.BeginTransaction()
		if _, err := p.SendWithTransaction(context.Background(), &rmq.Message{Topic: "tx", Body: []byte(body)}, tx); err != nil {
			t.Fatal(err)
		}
		if end != nil {
			if err := end(tx); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendTx("committed", nil) // left open: only the check-back can resolve it
	if half := receive(t, c, 1, time.Second, 200*time.Millisecond); len(half) != 0 {
		t.Fatal("half message visible before commit")
	}
	sendTx("rolled-back", func(tx rmq.Transaction) error { return tx.RollBack() })
	sendTx("unknown-then-commit", nil)
	sendTx("unknown-then-rollback", nil)
	tx := p.BeginTransaction()
	if _, err := p.SendWithTransaction(context.Background(), &rmq.Message{Topic: "tx", Body: []byte("committed-now")}, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	got := receive(t, c, 2, 5*time.Second, 5*time.Second)
	names := bodies(got)
	sort.Strings(names)
	// "committed" was never resolved by its sender: the check-back rolls it back, as it does every
	// body but "unknown-then-commit".
	if strings.Join(names, ",") != "committed-now,unknown-then-commit" {
		t.Fatalf("delivered %v, want committed-now and unknown-then-commit", names)
	}
	ackAll(t, c, got)
	// The producer answers check-backs asynchronously; give the rollback's answer time to arrive.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := checked.Load("unknown-then-rollback"); ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := checked.Load("unknown-then-rollback"); !ok {
		t.Fatal("the broker never checked back the unresolved transaction")
	}
	if _, ok := checked.Load("rolled-back"); ok {
		t.Fatal("a rolled-back transaction was checked back")
	}
	if _, ok := checked.Load("committed-now"); ok {
		t.Fatal("a committed transaction was checked back")
	}
	if more := receive(t, c, 1, 5*time.Second, 500*time.Millisecond); len(more) != 0 {
		t.Fatalf("rolled-back message delivered: %v", bodies(more))
	}
}

func TestTransactionWithoutAnAnswerIsDiscardedAfterMaxChecks(t *testing.T) {
	b, addr := startBroker(t, rocketmq.Config{TimeScale: 0.001})
	var checks atomic.Int32
	checker := &rmq.TransactionChecker{Check: func(mv *rmq.MessageView) rmq.TransactionResolution {
		checks.Add(1)
		return rmq.UNKNOWN
	}}
	p := newProducer(t, addr, rmq.WithTopics("tx2"), rmq.WithTransactionChecker(checker))
	tx := p.BeginTransaction()
	if _, err := p.SendWithTransaction(context.Background(), &rmq.Message{Topic: "tx2", Body: []byte("never")}, tx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && b.Stats("tx2").Half > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if b.Stats("tx2").Half != 0 {
		t.Fatal("half message still open")
	}
	if n := checks.Load(); n != rocketmq.DefaultTransactionCheckMax {
		t.Fatalf("checked back %d times, want %d", n, rocketmq.DefaultTransactionCheckMax)
	}
	c := newConsumer(t, addr, "GID_tx2", map[string]string{"tx2": "*"})
	if got := receive(t, c, 1, time.Second, 500*time.Millisecond); len(got) != 0 {
		t.Fatal("a discarded half message was delivered")
	}
}

func TestTagFilterAndTwoGroupsEachGetEveryMessage(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	p := newProducer(t, addr, rmq.WithTopics("tags"))
	for i, tag := range []string{"a", "b", "c", "a"} {
		m := &rmq.Message{Topic: "tags", Body: []byte(fmt.Sprintf("%s%d", tag, i))}
		m.SetTag(tag)
		send(t, p, m)
	}
	ab := newConsumer(t, addr, "GID_ab", map[string]string{"tags": "a||b"})
	all1 := newConsumer(t, addr, "GID_all", map[string]string{"tags": "*"})
	all2 := newConsumer(t, addr, "GID_all", map[string]string{"tags": "*"})

	got := receive(t, ab, 3, 5*time.Second, 3*time.Second)
	names := bodies(got)
	sort.Strings(names)
	if strings.Join(names, ",") != "a0,a3,b1" {
		t.Fatalf("a||b got %v, want a0 a3 b1", names)
	}
	ackAll(t, ab, got)

	// Two consumers of one group share the messages: together they see each exactly once.
	var shared []string
	deadline := time.Now().Add(5 * time.Second)
	for len(shared) < 4 && time.Now().Before(deadline) {
		for _, c := range []rmq.SimpleConsumer{all1, all2} {
			mvs := receive(t, c, 1, 5*time.Second, 300*time.Millisecond)
			ackAll(t, c, mvs)
			shared = append(shared, bodies(mvs)...)
		}
	}
	sort.Strings(shared)
	if strings.Join(shared, ",") != "a0,a3,b1,c2" {
		t.Fatalf("group GID_all got %v, want every message once", shared)
	}
}

func TestRestartFromDataLosesNoAcknowledgedSend(t *testing.T) {
	dir := t.TempDir()
	b, srv := openBroker(t, rocketmq.Config{DataDir: dir})
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: srv.Addr(), Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("durable"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		send(t, p, &rmq.Message{Topic: "durable", Body: []byte(fmt.Sprint(i))})
	}
	_ = p.GracefulStop()
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: srv.Addr(), ConsumerGroup: "GID_durable", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(500*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{"durable": rmq.SUB_ALL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	got := receive(t, c, 10, time.Minute, 5*time.Second)
	if len(got) != 10 {
		t.Fatalf("received %d of 10", len(got))
	}
	ackAll(t, c, got[:4]) // 4 acknowledged, 6 in flight when the broker dies
	_ = c.GracefulStop()
	srv.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	_, addr := startBroker(t, rocketmq.Config{DataDir: dir})
	c2 := newConsumer(t, addr, "GID_durable", map[string]string{"durable": "*"})
	back := receive(t, c2, 6, 5*time.Second, 5*time.Second)
	want := bodies(got[4:])
	have := bodies(back)
	sort.Strings(want)
	sort.Strings(have)
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Fatalf("after restart delivered %v, want the unacknowledged %v", have, want)
	}
	for _, mv := range back {
		if mv.GetDeliveryAttempt() != 2 {
			t.Fatalf("attempt after restart = %d, want 2 (the first delivery is remembered)", mv.GetDeliveryAttempt())
		}
	}
	fresh := newConsumer(t, addr, "GID_new_after_restart", map[string]string{"durable": "*"})
	if all := receive(t, fresh, 10, 5*time.Second, 5*time.Second); len(all) != 10 {
		t.Fatalf("a new group sees %d of the 10 stored messages", len(all))
	}
}

func TestBadRequestsGetProtocolErrors(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{MinInvisible: time.Second, Topics: []rocketmq.TopicDecl{{Name: "normal-only", Type: v2.MessageType_NORMAL}}})
	// Client v5.1.4's Start waits for the broker's settings, which it asks only of the endpoints its
	// topics' routes name (client.go startUp, trySyncSettings): a producer without topics never starts.
	p := newProducer(t, addr, rmq.WithTopics("normal-only"))
	cases := []struct {
		name string
		msg  *rmq.Message
		code v2.Code
	}{
		{"illegal topic", &rmq.Message{Topic: "bad topic!", Body: []byte("x")}, v2.Code_ILLEGAL_TOPIC},
		{"tag with a bar", func() *rmq.Message { m := &rmq.Message{Topic: "t", Body: []byte("x")}; m.SetTag("a|b"); return m }(), v2.Code_ILLEGAL_MESSAGE_TAG},
		// Found by local/conformance on Apache RocketMQ: the fc emulator's DLQ copy set ORIGIN_MESSAGE_ID.
		{"reserved property", func() *rmq.Message {
			m := &rmq.Message{Topic: "normal-only", Body: []byte("x")}
			m.AddProperty("ORIGIN_MESSAGE_ID", "x")
			return m
		}(), v2.Code_ILLEGAL_MESSAGE_PROPERTY_KEY},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Send(context.Background(), tc.msg)
			var st *rmq.ErrRpcStatus
			if !errors.As(err, &st) || st.Code != int32(tc.code) {
				t.Fatalf("send = %v, want %v", err, tc.code)
			}
		})
	}
	t.Run("fifo message to a normal topic", func(t *testing.T) {
		m := &rmq.Message{Topic: "normal-only", Body: []byte("x")}
		m.SetMessageGroup("g")
		if _, err := p.Send(context.Background(), m); err == nil {
			t.Fatal("a FIFO message was accepted by a NORMAL topic")
		}
	})
	t.Run("invisible time below the minimum", func(t *testing.T) {
		c := newConsumer(t, addr, "GID_bad", map[string]string{"normal-only": "*"})
		_, err := c.Receive(context.Background(), 1, 100*time.Millisecond)
		var st *rmq.ErrRpcStatus
		if !errors.As(err, &st) || st.Code != int32(v2.Code_ILLEGAL_INVISIBLE_TIME) {
			t.Fatalf("receive = %v, want ILLEGAL_INVISIBLE_TIME", err)
		}
	})
}

// A client that connects and says nothing must not hold up anyone else's connection.
func TestASilentConnectionDelaysNobody(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{})
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	p := newProducer(t, addr, rmq.WithTopics("t"))
	send(t, p, &rmq.Message{Topic: "t", Body: []byte("x")})
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a new producer needed %s while a silent connection was open", took)
	}
}

// A crash can leave the last record complete but without its newline; the next append must not
// join it, or the log would be unreadable at the following start.
func TestLogWithoutItsLastNewlineStaysReadable(t *testing.T) {
	dir := t.TempDir()
	sendOne := func(body string) {
		b, srv := openBroker(t, rocketmq.Config{DataDir: dir})
		p, err := rmq.NewProducer(&rmq.Config{Endpoint: srv.Addr(), Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("t"))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		send(t, p, &rmq.Message{Topic: "t", Body: []byte(body)})
		_ = p.GracefulStop()
		srv.Close()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	sendOne("first")
	path := filepath.Join(dir, "broker.log")
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("log after one send: %q, %v", data, err)
	}
	if err := os.WriteFile(path, data[:len(data)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	sendOne("second")
	b, err := rocketmq.New(rocketmq.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("restart after a record without its newline: %v", err)
	}
	defer b.Close()
	if n := b.Stats("t").Messages; n != 2 {
		t.Fatalf("log holds %d messages, want 2", n)
	}
}

// The push consumer (client v5.1.4) drives QueryAssignment, long-polled receives, acks and, on a failed
// consumption, ChangeInvisibleDuration with the group's backoff from the settings the broker sends it.
func TestPushConsumerConsumesAndRetriesAFailure(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{TimeScale: 0.01, MaxLongPolling: 500 * time.Millisecond})
	p := newProducer(t, addr, rmq.WithTopics("push"))
	var mu sync.Mutex
	attempts := map[string][]int32{}
	done := make(chan struct{})
	pc, err := rmq.NewPushConsumer(&rmq.Config{Endpoint: addr, ConsumerGroup: "GID_push", Credentials: &credentials.SessionCredentials{}},
		rmq.WithPushAwaitDuration(100*time.Millisecond),
		rmq.WithPushSubscriptionExpressions(map[string]*rmq.FilterExpression{"push": rmq.SUB_ALL}),
		rmq.WithPushMessageListener(&rmq.FuncMessageListener{Consume: func(mv *rmq.MessageView) rmq.ConsumerResult {
			mu.Lock()
			defer mu.Unlock()
			body := string(mv.GetBody())
			attempts[body] = append(attempts[body], mv.GetDeliveryAttempt())
			if body == "fails-once" && len(attempts[body]) == 1 {
				return rmq.FAILURE
			}
			if len(attempts["ok"]) > 0 && len(attempts["fails-once"]) == 2 {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return rmq.SUCCESS
		}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.GracefulStop() })
	send(t, p, &rmq.Message{Topic: "push", Body: []byte("ok")})
	send(t, p, &rmq.Message{Topic: "push", Body: []byte("fails-once")})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	time.Sleep(500 * time.Millisecond) // a wrongly repeated delivery would show up here
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(attempts["ok"]); got != "[1]" {
		t.Errorf("ok delivered with attempts %s, want [1]", got)
	}
	if got := fmt.Sprint(attempts["fails-once"]); got != "[1 2]" {
		t.Errorf("fails-once delivered with attempts %s, want [1 2]", got)
	}
}
