package rmqclient

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/shared/domain"
)

// The client's gRPC interceptor must log a failed call, and nothing for the calls that succeed (a
// producer's start, its sends).
func TestClientRPCLogKeepsOnlyFailures(t *testing.T) {
	ConfigureClientLogging(t.TempDir())
	broker, err := rocketmq.New(rocketmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	srv, err := rocketmq.Listen(broker, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p, err := NewPublisher(Config{Endpoint: srv.Addr(), GrantsTopic: "log-test-grants"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.producer.GracefulStop()
	for i := range 20 {
		c := domain.Claim{ID: "c" + strings.Repeat("x", i), CampaignID: "k", UserID: "u", RequestID: "r"}
		if err := p.PublishGrant(context.Background(), c); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	conn, err := rmq.NewClientConn(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Conn().Invoke(ctx, "/apache.rocketmq.v2.MessagingService/NoSuchMethod", &emptypb.Empty{}, &emptypb.Empty{}); err == nil {
		t.Fatal("a call of a method the broker does not have succeeded")
	}
	if rpcLogFile == "" {
		t.Fatal("no interceptor log configured")
	}
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, err = os.ReadFile(rpcLogFile); err == nil && strings.Contains(string(data), "NoSuchMethod") {
			break
		}
	}
	log := string(data)
	if !strings.Contains(log, "rocketmq logger error") || !strings.Contains(log, "NoSuchMethod") {
		t.Errorf("the failed call is not in %s:\n%s", rpcLogFile, log)
	}
	if n := strings.Count(log, "rocketmq logger info"); n != 0 {
		t.Errorf("%d lines for successful calls in %s:\n%s", n, rpcLogFile, log)
	}
}
