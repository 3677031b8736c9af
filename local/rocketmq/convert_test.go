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
