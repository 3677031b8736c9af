package mq

import (
	"testing"
)

func TestDecodeChange(t *testing.T) {
	cases := []struct {
		body string
		ok   bool
	}{
		{`{"entity":"campaign","id":"cmp_1","version":3}`, true},
		{`{"entity":"user","id":"u-1","version":1}`, true},
		{`{"entity":"order","id":"x","version":1}`, false},
		{`{"entity":"user","id":"bad id","version":1}`, false},
		{`{"entity":"user","id":"u","version":0}`, false},
		{`{"entity":"user","id":"u","version":1,"stock":5}`, false},
		{`{"entity":"user","id":"u","version":1} {}`, false},
		// Regression: Decoder.More() said "no more values" before a stray '}', so this was accepted.
		{`{"entity":"user","id":"u","version":1}}`, false},
		{`{"entity":"user","id":"u","version":1}]`, false},
		{"{\"entity\":\"user\",\"id\":\"u\",\"version\":1}\n", true},
		{`not json`, false},
		{``, false},
	}
	for _, tc := range cases {
		_, err := DecodeChange([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("DecodeChange(%s): err=%v, want ok=%v", tc.body, err, tc.ok)
		}
	}
}

func TestDecodeGrant(t *testing.T) {
	good := `{"id":"clm_1","campaign_id":"cmp_1","user_id":"u1","request_id":"r","benefit":{"type":"coupon","amount":500},"cost_points":0,"granted_at":"2026-11-25T02:00:00Z"}`
	c, err := DecodeGrant([]byte(good))
	if err != nil || c.ID != "clm_1" || c.Benefit.Amount != 500 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{
		`{"id":"clm_1","campaign_id":"cmp_1","user_id":"u1","granted_at":"2026-11-25T02:00:00Z","extra":1}`,
		`{"id":"clm_1","campaign_id":"cmp_1","user_id":"u1"}`,
		`{"id":"","campaign_id":"cmp_1","user_id":"u1","granted_at":"2026-11-25T02:00:00Z"}`,
		`{"id":"clm_1","campaign_id":"cmp_1","user_id":"u1","cost_points":-1,"granted_at":"2026-11-25T02:00:00Z"}`,
		`[]`,
		good + `}`,
		good + `,`,
	} {
		if _, err := DecodeGrant([]byte(bad)); err == nil {
			t.Errorf("DecodeGrant(%s) succeeded", bad)
		}
	}
}
