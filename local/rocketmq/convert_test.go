package rocketmq

import (
	"testing"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

// Every delivered message carries the body's MD5 as the proxy sends it, whatever the producer sent:
// the Node.js client 1.0.8 crashed on each message without one (MessageView reads
// getBodyDigest().toObject() unconditionally), and it compares the upper-case hex.
func TestDeliveredMessagesCarryTheProxysBodyDigest(t *testing.T) {
	m := toProto(&storedMessage{Topic: "t", ID: "id", Body: []byte("hello")}, nil)
	d := m.GetSystemProperties().GetBodyDigest()
	if d.GetType() != v2.DigestType_MD5 || d.GetChecksum() != "5D41402ABC4B2A76B9719D911017C592" {
		t.Fatalf("body digest = %v, want MD5 5D41402ABC4B2A76B9719D911017C592", d)
	}
}

// A dead letter reaches consumers as the proxy sends it: its origin in dead_letter_queue, not among
// the user properties, which keep what the producer set (GrpcConverter.java buildUserAttributes,
// buildSystemProperties). Found by local/conformance's max-attempts-dlq on Apache RocketMQ.
func TestADeadLettersOriginIsASystemProperty(t *testing.T) {
	m := toProto(&storedMessage{Topic: DLQPrefix + "g", ID: "id", Body: []byte("x"),
		Props: map[string]string{"color": "red", PropertyDLQOriginTopic: "t", PropertyDLQOriginMessageID: "id"}}, nil)
	if p := m.GetUserProperties(); len(p) != 1 || p["color"] != "red" {
		t.Errorf("user properties %v, want only color=red", p)
	}
	if d := m.GetSystemProperties().GetDeadLetterQueue(); d.GetTopic() != "t" || d.GetMessageId() != "id" {
		t.Errorf("dead_letter_queue %v, want topic t, message id id", d)
	}
	plain := toProto(&storedMessage{Topic: "t", ID: "id2", Body: []byte("x"), Props: map[string]string{"color": "red"}}, nil)
	if plain.GetSystemProperties().DeadLetterQueue != nil || plain.GetUserProperties()["color"] != "red" {
		t.Errorf("a message that never died: %v", plain)
	}
}
