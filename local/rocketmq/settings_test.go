package rocketmq_test

import (
	"context"
	"testing"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/benefit-issuance/benefits/local/rocketmq"
)

// A documented difference (README, "Differences found"), pinned here: Apache RocketMQ's proxy fails a
// receive from a client whose settings it has not yet had over the telemetry stream (INTERNAL_ERROR,
// a NullPointerException in ReceiveMessageActivity), which the Python client's SimpleConsumer meets
// because its start does not wait for them; the emulator serves the receive. The official clients are
// driven raw here because they all send their settings first.
func TestAReceiveBeforeTheClientsSettingsIsServed(t *testing.T) {
	_, addr := startBroker(t, rocketmq.Config{Topics: []rocketmq.TopicDecl{{Name: "no-settings", Type: v2.MessageType_NORMAL}}})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-mq-client-id", "never-sent-settings")
	stream, err := v2.NewMessagingServiceClient(conn).ReceiveMessage(ctx, &v2.ReceiveMessageRequest{
		Group:             &v2.Resource{Name: "GID_no_settings"},
		MessageQueue:      &v2.MessageQueue{Topic: &v2.Resource{Name: "no-settings"}},
		FilterExpression:  &v2.FilterExpression{Type: v2.FilterType_TAG, Expression: "*"},
		BatchSize:         1,
		InvisibleDuration: durationpb.New(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.GetStatus().GetCode(); code != v2.Code_MESSAGE_NOT_FOUND {
		t.Fatalf("receive without settings answered %v (%s), want the empty queue's MESSAGE_NOT_FOUND", code, resp.GetStatus().GetMessage())
	}
}
