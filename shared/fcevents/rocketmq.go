package fcevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// RocketMQEvent is one CloudEvent from an EventBridge trigger with a RocketMQ source.
type RocketMQEvent struct {
	ID                      string       `json:"id"`
	Source                  string       `json:"source"`
	SpecVersion             string       `json:"specversion"`
	Type                    string       `json:"type"`
	DataContentType         string       `json:"datacontenttype,omitempty"`
	Subject                 string       `json:"subject,omitempty"`
	Time                    *time.Time   `json:"time,omitempty"`
	AliyunAccountID         string       `json:"aliyunaccountid,omitempty"`
	AliyunPublishTime       *time.Time   `json:"aliyunpublishtime,omitempty"`
	AliyunOriginalAccountID string       `json:"aliyunoriginalaccountid,omitempty"`
	AliyunEventBusName      string       `json:"aliyuneventbusname,omitempty"`
	AliyunRegionID          string       `json:"aliyunregionid,omitempty"`
	AliyunPublishAddr       string       `json:"aliyunpublishaddr,omitempty"`
	Data                    RocketMQData `json:"data"`
}

// RocketMQData is the message itself.
type RocketMQData struct {
	Topic            string     `json:"topic"`
	SystemProperties Properties `json:"systemProperties"`
	UserProperties   Properties `json:"userProperties"`
	// Body is the message body. EventBridge sends it as a JSON string; Body holds the string's text.
	Body string `json:"body"`
}

// System property names FC's RocketMQ source sets.
const (
	PropertyKeys  = "KEYS"
	PropertyTags  = "TAGS"
	PropertyMsgID = "UNIQ_KEY"
)

// Properties are message properties. Values arrive as strings, numbers or booleans; all are kept as
// their text so that one odd value cannot fail a whole batch.
type Properties map[string]string

func (p *Properties) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*p = nil
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("properties: %w", err)
	}
	out := make(Properties, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = s
			continue
		}
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		if err := dec.Decode(&n); err == nil {
			out[k] = n.String()
			continue
		}
		var bl bool
		if err := json.Unmarshal(v, &bl); err == nil {
			out[k] = strconv.FormatBool(bl)
			continue
		}
		out[k] = string(v)
	}
	*p = out
	return nil
}

// DecodeRocketMQ accepts what an EventBridge RocketMQ trigger invokes a function with: one CloudEvent
// (push mode) or a JSON array of them (event-streaming mode with batching).
func DecodeRocketMQ(payload []byte) ([]RocketMQEvent, error) {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("rocketmq event: empty payload")
	}
	if trimmed[0] == '[' {
		var events []RocketMQEvent
		if err := json.Unmarshal(trimmed, &events); err != nil {
			return nil, fmt.Errorf("rocketmq event batch: %w", err)
		}
		return events, nil
	}
	var ev RocketMQEvent
	if err := json.Unmarshal(trimmed, &ev); err != nil {
		return nil, fmt.Errorf("rocketmq event: %w", err)
	}
	return []RocketMQEvent{ev}, nil
}
