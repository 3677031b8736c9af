package fc

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"

	"github.com/benefit-issuance/benefits/local/rocketmq"
)

// One call acknowledges what the broker still holds for the group; what it refuses (here messages
// acknowledged already, whose receipt handles are spent) comes back for the one-by-one path, and
// nothing acknowledged is delivered again after its invisible time.
func TestBatchAckerAcknowledgesABatchAndReturnsWhatItCouldNot(t *testing.T) {
	b, err := rocketmq.New(rocketmq.Config{MinLongPolling: 100 * time.Millisecond, MinInvisible: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rocketmq.Listen(b, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); b.Close() })
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: srv.Addr(), Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("work"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.GracefulStop()
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: srv.Addr(), ConsumerGroup: "GID_ack", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(200*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{"work": rmq.SUB_ALL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.GracefulStop()
	// Sent after the group exists: a new group starts at the topic's end.
	const n = 10
	for i := range n {
		if _, err := p.Send(context.Background(), &rmq.Message{Topic: "work", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	const invisible = time.Second
	var got []*rmq.MessageView
	for deadline := time.Now().Add(10 * time.Second); len(got) < n && time.Now().Before(deadline); {
		mvs, err := c.Receive(context.Background(), n, invisible)
		if err != nil {
			t.Log(err)
		}
		got = append(got, mvs...)
	}
	if len(got) != n {
		t.Fatalf("received %d of %d", len(got), n)
	}
	spent := map[string]bool{}
	for _, mv := range got[:3] {
		if err := c.Ack(context.Background(), mv); err != nil {
			t.Fatal(err)
		}
		spent[mv.GetMessageId()] = true
	}

	a, err := newBatchAcker(srv.Addr(), "GID_ack", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	left := a.ack(context.Background(), got)
	var leftIDs, wantIDs []string
	for _, mv := range left {
		leftIDs = append(leftIDs, mv.GetMessageId())
	}
	for id := range spent {
		wantIDs = append(wantIDs, id)
	}
	sort.Strings(leftIDs)
	sort.Strings(wantIDs)
	if fmt.Sprint(leftIDs) != fmt.Sprint(wantIDs) {
		t.Fatalf("left for one-by-one: %v, want the 3 acknowledged before: %v", leftIDs, wantIDs)
	}

	time.Sleep(invisible + 200*time.Millisecond)
	if again, err := c.Receive(context.Background(), n, invisible); len(again) != 0 {
		t.Fatalf("%d messages delivered again after the batch acknowledgement (err %v)", len(again), err)
	}
}
