package domain

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodCampaign = `{
  "name": "New users: 5 yuan off, 10:00",
  "benefit": {"type": "coupon", "amount": 500},
  "audience": {"segment": "new_users", "new_user_days": 30},
  "cost_points": 0,
  "mode": "claim",
  "starts_at": "2026-11-25T10:00:00+08:00",
  "ends_at": "2026-11-26T00:00:00+08:00",
  "stock": 100,
  "per_user_limit": 1,
  "status": "active"
}`

func withField(body, field, value string) string {
	return strings.Replace(body, "{\n", "{\n  \""+field+"\": "+value+",\n", 1)
}

func TestDecodeNewCampaign(t *testing.T) {
	c, err := DecodeNewCampaign([]byte(goodCampaign))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "New users: 5 yuan off, 10:00" || c.Benefit.Amount != 500 || *c.Audience.NewUserDays != 30 ||
		c.Stock != 100 || !c.StartsAt.Equal(time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)) || c.Status != StatusActive {
		t.Fatalf("decoded wrongly: %+v", c)
	}
	minimal := `{"name":"n","benefit":{"type":"points","amount":5},"audience":{"segment":"all"},"mode":"grant",
		"starts_at":"2026-11-25T10:00:00Z","ends_at":"2026-11-25T11:00:00Z","stock":3,"per_user_limit":1}`
	c, err = DecodeNewCampaign([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != StatusActive || c.CostPoints != 0 || c.Mode != ModeGrant || c.Buckets != 1 {
		t.Fatalf("defaults wrong: %+v", c)
	}
	c, err = DecodeNewCampaign([]byte(withField(goodCampaign, "buckets", "8")))
	if err != nil || c.Buckets != 8 || c.StockBuckets() != 8 {
		t.Fatalf("buckets 8: %+v, %v", c, err)
	}
}

func TestDecodersRefuseMalformedInput(t *testing.T) {
	type decoder func([]byte) error
	campaign := func(b []byte) error { _, err := DecodeNewCampaign(b); return err }
	patch := func(b []byte) error { _, err := DecodeCampaignPatch(b); return err }
	user := func(b []byte) error { _, err := DecodeUserPut(b); return err }
	points := func(b []byte) error { _, err := DecodePointsCredit(b); return err }
	claim := func(b []byte) error { _, err := DecodeClaimRequest(b); return err }
	cases := []struct {
		name  string
		dec   decoder
		body  string
		code  Code
		field string // checked when not empty
	}{
		{"campaign: empty", campaign, ``, CodeInvalidRequest, ""},
		{"campaign: array", campaign, `[1]`, CodeInvalidRequest, ""},
		{"campaign: string", campaign, `"x"`, CodeInvalidRequest, ""},
		{"campaign: truncated", campaign, goodCampaign[:40], CodeInvalidRequest, ""},
		{"campaign: trailing data", campaign, goodCampaign + ` {}`, CodeInvalidRequest, ""},
		{"campaign: unknown field", campaign, withField(goodCampaign, "colour", `"red"`), CodeInvalidRequest, "colour"},
		{"campaign: unknown nested field", campaign, strings.Replace(goodCampaign, `"amount": 500`, `"amount": 500, "x": 1`, 1), CodeInvalidRequest, "x"},
		{"campaign: id is read-only", campaign, withField(goodCampaign, "id", `"c1"`), CodeInvalidRequest, "id"},
		{"campaign: version is read-only", campaign, withField(goodCampaign, "version", `7`), CodeInvalidRequest, "version"},
		{"campaign: stock as string", campaign, strings.Replace(goodCampaign, `"stock": 100`, `"stock": "100"`, 1), CodeInvalidRequest, "stock"},
		{"campaign: stock fractional", campaign, strings.Replace(goodCampaign, `"stock": 100`, `"stock": 1.5`, 1), CodeInvalidRequest, "stock"},
		{"campaign: stock negative", campaign, strings.Replace(goodCampaign, `"stock": 100`, `"stock": -1`, 1), CodeInvalidRequest, "stock"},
		{"campaign: stock null", campaign, strings.Replace(goodCampaign, `"stock": 100`, `"stock": null`, 1), CodeInvalidRequest, "stock"},
		{"campaign: stock missing", campaign, strings.Replace(goodCampaign, `"stock": 100,`, ``, 1), CodeInvalidRequest, "stock"},
		{"campaign: bad time", campaign, strings.Replace(goodCampaign, `2026-11-25T10:00:00+08:00`, `tomorrow`, 1), CodeInvalidRequest, "starts_at"},
		{"campaign: time without zone", campaign, strings.Replace(goodCampaign, `2026-11-25T10:00:00+08:00`, `2026-11-25T10:00:00`, 1), CodeInvalidRequest, "starts_at"},
		{"campaign: benefit not object", campaign, strings.Replace(goodCampaign, `{"type": "coupon", "amount": 500}`, `5`, 1), CodeInvalidRequest, "benefit"},
		{"campaign: benefit type missing", campaign, strings.Replace(goodCampaign, `"type": "coupon", `, ``, 1), CodeInvalidRequest, "benefit.type"},
		{"campaign: days missing", campaign, strings.Replace(goodCampaign, `, "new_user_days": 30`, ``, 1), CodeInvalidRequest, "audience.new_user_days"},
		{"campaign: mode missing", campaign, strings.Replace(goodCampaign, `"mode": "claim",`, ``, 1), CodeInvalidRequest, "mode"},
		{"campaign: mode number", campaign, strings.Replace(goodCampaign, `"mode": "claim"`, `"mode": 1`, 1), CodeInvalidRequest, "mode"},
		{"campaign: too large", campaign, `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, CodePayloadTooLarge, ""},
		{"patch: empty object", patch, `{}`, CodeInvalidRequest, ""},
		{"campaign: buckets 0", campaign, withField(goodCampaign, "buckets", `0`), CodeInvalidRequest, "buckets"},
		{"campaign: too many buckets", campaign, withField(goodCampaign, "buckets", `65`), CodeInvalidRequest, "buckets"},
		{"campaign: buckets as string", campaign, withField(goodCampaign, "buckets", `"4"`), CodeInvalidRequest, "buckets"},
		{"patch: mode", patch, `{"mode":"grant"}`, CodeInvalidRequest, "mode"},
		{"patch: buckets are fixed at creation", patch, `{"buckets":4}`, CodeInvalidRequest, "buckets"},
		{"patch: version", patch, `{"version":2,"stock":1}`, CodeInvalidRequest, "version"},
		{"patch: unknown", patch, `{"stok":1}`, CodeInvalidRequest, "stok"},
		{"patch: null name", patch, `{"name":null}`, CodeInvalidRequest, "name"},
		{"patch: bad time", patch, `{"ends_at":"soon"}`, CodeInvalidRequest, "ends_at"},
		{"patch: stock bool", patch, `{"stock":true}`, CodeInvalidRequest, "stock"},
		{"user: missing registered_at", user, `{"member":true}`, CodeInvalidRequest, "registered_at"},
		{"user: points read-only", user, `{"registered_at":"2026-01-01T00:00:00Z","points":5}`, CodeInvalidRequest, "points"},
		{"user: id read-only", user, `{"registered_at":"2026-01-01T00:00:00Z","id":"u"}`, CodeInvalidRequest, "id"},
		{"user: member string", user, `{"registered_at":"2026-01-01T00:00:00Z","member":"yes"}`, CodeInvalidRequest, "member"},
		{"points: zero", points, `{"delta":0,"request_id":"r"}`, CodeInvalidRequest, "delta"},
		{"points: negative", points, `{"delta":-5,"request_id":"r"}`, CodeInvalidRequest, "delta"},
		{"points: too large", points, `{"delta":10000000000,"request_id":"r"}`, CodeInvalidRequest, "delta"},
		{"points: overflow", points, `{"delta":99999999999999999999,"request_id":"r"}`, CodeInvalidRequest, "delta"},
		{"points: no request id", points, `{"delta":5}`, CodeInvalidRequest, "request_id"},
		{"points: long request id", points, `{"delta":5,"request_id":"` + strings.Repeat("r", 65) + `"}`, CodeInvalidRequest, "request_id"},
		{"claim: missing campaign", claim, `{"request_id":"r"}`, CodeInvalidRequest, "campaign_id"},
		{"claim: bad campaign id", claim, `{"campaign_id":"../x","request_id":"r"}`, CodeInvalidRequest, "campaign_id"},
		{"claim: empty request id", claim, `{"campaign_id":"c","request_id":""}`, CodeInvalidRequest, "request_id"},
		{"claim: reserved request id", claim, `{"campaign_id":"c","request_id":"grant:c"}`, CodeInvalidRequest, "request_id"},
		{"claim: user id in body", claim, `{"campaign_id":"c","request_id":"r","user_id":"u"}`, CodeInvalidRequest, "user_id"},
		{"claim: control char", claim, `{"campaign_id":"c","request_id":"a\u0001"}`, CodeInvalidRequest, "request_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.dec([]byte(tc.body))
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("want a domain error, got %v", err)
			}
			if de.Code != tc.code {
				t.Fatalf("code %s, want %s (%s)", de.Code, tc.code, de.Message)
			}
			if tc.field != "" && (de.Field != tc.field || !strings.Contains(de.Message, tc.field)) {
				t.Fatalf("error %q names field %q, want %q", de.Message, de.Field, tc.field)
			}
		})
	}
}

func TestDecodeGoodSmallBodies(t *testing.T) {
	p, err := DecodeCampaignPatch([]byte(`{"stock": 10}`))
	if err != nil || p.Stock == nil || *p.Stock != 10 {
		t.Fatalf("patch: %+v %v", p, err)
	}
	u, err := DecodeUserPut([]byte(`{"registered_at":"2026-11-01T08:00:00+08:00","member":true}`))
	if err != nil || !u.Member || !u.RegisteredAt.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("user: %+v %v", u, err)
	}
	pc, err := DecodePointsCredit([]byte(`{"delta":50,"request_id":"credit-1"}`))
	if err != nil || pc.Delta != 50 || pc.RequestID != "credit-1" {
		t.Fatalf("points: %+v %v", pc, err)
	}
	cr, err := DecodeClaimRequest([]byte(` {"campaign_id":"cmp_1","request_id":"r-1"} `))
	if err != nil || cr.CampaignID != "cmp_1" || cr.RequestID != "r-1" {
		t.Fatalf("claim: %+v %v", cr, err)
	}
}

func FuzzDecoders(f *testing.F) {
	f.Add([]byte(goodCampaign))
	f.Add([]byte(`{"stock": 10}`))
	f.Add([]byte(`{"campaign_id":"c","request_id":"r"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Whatever the input, a decoder answers with a value or a domain error; never a panic or a raw error.
		for _, dec := range []func([]byte) error{
			func(b []byte) error { _, err := DecodeNewCampaign(b); return err },
			func(b []byte) error { _, err := DecodeCampaignPatch(b); return err },
			func(b []byte) error { _, err := DecodeUserPut(b); return err },
			func(b []byte) error { _, err := DecodePointsCredit(b); return err },
			func(b []byte) error { _, err := DecodeClaimRequest(b); return err },
		} {
			if err := dec(b); err != nil {
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("non-domain error %T: %v", err, err)
				}
			}
		}
	})
}

// DecodeJSON is the one strict decoder; shared/mq decodes queue messages with it too.
func TestDecodeJSON(t *testing.T) {
	type small struct {
		A int `json:"a"`
	}
	cases := []struct {
		body string
		want error // nil: decodes; errAny: some encoding/json error
	}{
		{`{"a":1}`, nil},
		{" \n{\"a\":1}\n ", nil},
		{`{"a":1}}`, ErrTrailingData},
		{`{"a":1}]`, ErrTrailingData},
		{`{"a":1} {"a":2}`, ErrTrailingData},
		{`{"a":1} x`, ErrTrailingData},
		{`[{"a":1}]`, ErrNotObject},
		{`null`, ErrNotObject},
		{``, ErrNotObject},
		{`{"a":1,"b":2}`, errAny},
		{`{"a":"1"}`, errAny},
		{`{"a":1`, errAny},
	}
	for _, tc := range cases {
		var v small
		err := DecodeJSON([]byte(tc.body), &v)
		switch {
		case tc.want == nil && (err != nil || v.A != 1):
			t.Errorf("DecodeJSON(%q) = %+v, %v; want a=1", tc.body, v, err)
		case tc.want == errAny && err == nil:
			t.Errorf("DecodeJSON(%q) succeeded", tc.body)
		case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
			t.Errorf("DecodeJSON(%q) = %v, want %v", tc.body, err, tc.want)
		}
	}
	// Request bodies get the same verdict as an invalid_request.
	if _, err := DecodeClaimRequest([]byte(`{"campaign_id":"c","request_id":"r"}}`)); CodeOf(err) != CodeInvalidRequest {
		t.Fatalf("trailing brace in a request: %v", err)
	}
}

var errAny = errors.New("any decoding error")
