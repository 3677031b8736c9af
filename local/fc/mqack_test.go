package fc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"

	"github.com/benefit-issuance/benefits/local/apache"
	"github.com/benefit-issuance/benefits/local/rocketmq"
)

// ackFixture is a producer and a consumer of group GID_ack on topic "work", with n messages received.
type ackFixture struct {
	endpoint string
	consumer rmq.SimpleConsumer
	got      []*rmq.MessageView
}

func receiveBatch(t *testing.T, endpoint string, n int, invisible time.Duration) *ackFixture {
	t.Helper()
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: endpoint, Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("work"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.GracefulStop() })
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: endpoint, ConsumerGroup: "GID_ack", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(2*time.Second), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{"work": rmq.SUB_ALL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.GracefulStop() })
	// Sent once the group exists: a new group starts at the topic's end.
	for i := range n {
		if _, err := p.Send(context.Background(), &rmq.Message{Topic: "work", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	f := &ackFixture{endpoint: endpoint, consumer: c}
	for deadline := time.Now().Add(30 * time.Second); len(f.got) < n && time.Now().Before(deadline); {
		mvs, err := c.Receive(context.Background(), int32(n-len(f.got)), invisible)
		if err != nil && !emptyReceive(err) {
			t.Log(err)
		}
		f.got = append(f.got, mvs...)
	}
	if len(f.got) != n {
		t.Fatalf("received %d of %d", len(f.got), n)
	}
	return f
}

// assertNotRedelivered waits out the invisible time: an acknowledged message is never delivered again.
func (f *ackFixture) assertNotRedelivered(t *testing.T, invisible time.Duration) {
	t.Helper()
	time.Sleep(invisible + 500*time.Millisecond)
	if again, err := f.consumer.Receive(context.Background(), int32(len(f.got)), invisible); len(again) != 0 {
		t.Fatalf("%d messages delivered again after the batch acknowledgement (err %v)", len(again), err)
	}
}

// batchAckAfterSome acknowledges 3 of f's messages one by one, then the whole batch in one call: every
// entry is answered OK (a second ack of an acknowledged message too, as Apache RocketMQ answers it) and
// none is delivered again after its invisible time.
func batchAckAfterSome(t *testing.T, f *ackFixture, invisible time.Duration) {
	t.Helper()
	for _, mv := range f.got[:3] {
		if err := f.consumer.Ack(context.Background(), mv); err != nil {
			t.Fatal(err)
		}
	}
	a, err := newBatchAcker(f.endpoint, "GID_ack", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if left, err := a.ack(context.Background(), f.got); len(left) != 0 || err != nil {
		t.Fatalf("%d of %d left unacknowledged: %v", len(left), len(f.got), err)
	}
	f.assertNotRedelivered(t, invisible)
}

func TestBatchAckerAcknowledgesABatch(t *testing.T) {
	_, addr := startAckBroker(t)
	const invisible = time.Second
	batchAckAfterSome(t, receiveBatch(t, addr, 10, invisible), invisible)
}

// What the broker refuses (here handles whose invisible time has passed) comes back with the reason,
// for the one-by-one path, and those messages are delivered again.
func TestBatchAckerReturnsWhatTheBrokerRefused(t *testing.T) {
	_, addr := startAckBroker(t)
	refusesExpiredHandles(t, addr, time.Second)
}

func refusesExpiredHandles(t *testing.T, addr string, invisible time.Duration) {
	t.Helper()
	f := receiveBatch(t, addr, 4, invisible)
	time.Sleep(invisible + 200*time.Millisecond)
	a, err := newBatchAcker(addr, "GID_ack", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	left, err := a.ack(context.Background(), f.got)
	if len(left) != len(f.got) || err == nil {
		t.Fatalf("%d of %d left after their handles expired (err %v); want all, with the reason", len(left), len(f.got), err)
	}
	var back []*rmq.MessageView
	for deadline := time.Now().Add(10 * time.Second); len(back) < len(f.got) && time.Now().Before(deadline); {
		mvs, _ := f.consumer.Receive(context.Background(), int32(len(f.got)), invisible)
		back = append(back, mvs...)
	}
	if len(back) != len(f.got) {
		t.Fatalf("%d of %d refused messages delivered again", len(back), len(f.got))
	}
}

func startAckBroker(t *testing.T) (*rocketmq.Broker, string) {
	t.Helper()
	b, err := rocketmq.New(rocketmq.Config{MinLongPolling: 100 * time.Millisecond, MinInvisible: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rocketmq.Listen(b, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); b.Close() })
	return b, srv.Addr()
}

// The Apache proxy takes many entries in one AckMessage call too (AckMessageActivity acknowledges each
// and answers each), answers a second ack of a message OK, and refuses expired handles, as the
// emulator does. It runs with BROKER=apache (make test-apache).
func TestBatchAckerOnApacheRocketMQ(t *testing.T) {
	if os.Getenv("BROKER") != "apache" {
		t.Skip("BROKER=apache runs it against Apache RocketMQ (make test-apache)")
	}
	ctx := context.Background()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := apache.ModuleCacheDir(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := apache.Start(ctx, apache.Config{CacheDir: cache, Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	if err := b.EnsureTopics(ctx, []apache.Topic{{Name: "work", Type: "NORMAL"}}, []apache.Group{{Name: "GID_ack"}}); err != nil {
		t.Fatal(err)
	}
	const invisible = 10 * time.Second // the proxy's least
	batchAckAfterSome(t, receiveBatch(t, b.Endpoint(), 10, invisible), invisible)
	refusesExpiredHandles(t, b.Endpoint(), invisible)
}
