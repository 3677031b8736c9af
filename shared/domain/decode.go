package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxBodyBytes is the largest request body the HTTP contract accepts.
const MaxBodyBytes = 64 << 10

// Errors of DecodeJSON beyond encoding/json's own.
var (
	ErrNotObject    = errors.New("body must be a JSON object")
	ErrTrailingData = errors.New("unexpected data after the JSON object")
)

// DecodeJSON is the project's one strict JSON decoder, for request bodies and queue messages alike:
// exactly one JSON object, no unknown fields, nothing after it but white space. encoding/json's
// Decoder.More reports only whether another value could start, so it lets `{"a":1}}` through; reading
// the next token and requiring io.EOF does not.
func DecodeJSON(body []byte, dst any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	return nil
}

// decodeStrict decodes a request body with DecodeJSON, within the HTTP contract's size limit, and turns what it
// refuses into an invalid_request error that names the field.
func decodeStrict(body []byte, dst any) error {
	if len(body) > MaxBodyBytes {
		return &Error{Code: CodePayloadTooLarge, Message: fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes)}
	}
	if err := DecodeJSON(body, dst); err != nil {
		return describeJSONError(err)
	}
	return nil
}

func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, ErrNotObject), errors.Is(err, ErrTrailingData):
		return Invalid("", "%s", err.Error())
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return Invalid(field, "must be %s, not %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return Invalid("", "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Invalid("", "malformed JSON: unexpected end of body")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return Invalid(f, "unknown field")
	}
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	return Invalid("", "malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(k string) string {
	switch k {
	case "int64", "int", "int32", "uint64":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map", "ptr":
		return "an object"
	case "slice":
		return "an array"
	}
	return k
}

// readOnly holds fields the server owns; their presence in a request body is an error, not a no-op.
type readOnly struct {
	ID      json.RawMessage `json:"id"`
	Version json.RawMessage `json:"version"`
}

func (r readOnly) check() error {
	if r.ID != nil {
		return Invalid("id", "is assigned by the server and cannot be written")
	}
	if r.Version != nil {
		return Invalid("version", "is assigned by the server and cannot be written")
	}
	return nil
}

type benefitInput struct {
	Type   *string `json:"type"`
	Amount *int64  `json:"amount"`
}

func (b *benefitInput) toBenefit() (Benefit, error) {
	if b == nil {
		return Benefit{}, Invalid("benefit", "must be an object")
	}
	if b.Type == nil {
		return Benefit{}, Invalid("benefit.type", "is required")
	}
	if b.Amount == nil {
		return Benefit{}, Invalid("benefit.amount", "is required")
	}
	return Benefit{Type: BenefitType(*b.Type), Amount: *b.Amount}, nil
}

type audienceInput struct {
	Segment     *string `json:"segment"`
	NewUserDays *int    `json:"new_user_days"`
}

func (a *audienceInput) toAudience() (Audience, error) {
	if a == nil {
		return Audience{}, Invalid("audience", "must be an object")
	}
	if a.Segment == nil {
		return Audience{}, Invalid("audience.segment", "is required")
	}
	return Audience{Segment: Segment(*a.Segment), NewUserDays: a.NewUserDays}, nil
}

// campaignInput mirrors the writable fields with pointers so that "absent" and "zero" differ, and
// carries json.RawMessage for fields whose presence alone is an error.
type campaignInput struct {
	readOnly
	Name         *string         `json:"name"`
	Benefit      *benefitInput   `json:"benefit"`
	Audience     *audienceInput  `json:"audience"`
	CostPoints   *int64          `json:"cost_points"`
	Mode         json.RawMessage `json:"mode"`
	StartsAt     *string         `json:"starts_at"`
	EndsAt       *string         `json:"ends_at"`
	Stock        *int64          `json:"stock"`
	PerUserLimit *int64          `json:"per_user_limit"`
	Status       *string         `json:"status"`
	Buckets      *int            `json:"buckets"`
}

// nullFields lists the keys present with a JSON null; the pointer fields cannot tell null from absent.
func nullFields(body []byte) ([]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, describeJSONError(err)
	}
	var out []string
	for k, v := range raw {
		if string(bytes.TrimSpace(v)) == "null" {
			out = append(out, k)
		}
	}
	return out, nil
}

func refuseNulls(body []byte) error {
	nulls, err := nullFields(body)
	if err != nil {
		return err
	}
	if len(nulls) > 0 {
		first := nulls[0]
		for _, n := range nulls[1:] {
			if n < first {
				first = n
			}
		}
		return Invalid(first, "must not be null")
	}
	return nil
}

func parseTime(field string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return nil, Invalid(field, "must be an RFC 3339 time such as 2026-11-25T10:00:00+08:00")
	}
	return &t, nil
}

// DecodeNewCampaign parses the body of POST /v1/campaigns. Status defaults to active and cost_points to 0;
// every other field is required.
func DecodeNewCampaign(body []byte) (Campaign, error) {
	var in campaignInput
	if err := decodeStrict(body, &in); err != nil {
		return Campaign{}, err
	}
	if err := refuseNulls(body); err != nil {
		return Campaign{}, err
	}
	if err := in.check(); err != nil {
		return Campaign{}, err
	}
	c := Campaign{CostPoints: 0, Status: StatusActive, Buckets: 1}
	if in.Name == nil {
		return Campaign{}, Invalid("name", "is required")
	}
	c.Name = *in.Name
	b, err := in.Benefit.toBenefit()
	if err != nil {
		return Campaign{}, err
	}
	c.Benefit = b
	a, err := in.Audience.toAudience()
	if err != nil {
		return Campaign{}, err
	}
	c.Audience = a
	if in.CostPoints != nil {
		c.CostPoints = *in.CostPoints
	}
	if in.Mode == nil {
		return Campaign{}, Invalid("mode", "is required")
	}
	var mode string
	if err := json.Unmarshal(in.Mode, &mode); err != nil {
		return Campaign{}, Invalid("mode", "must be a string")
	}
	c.Mode = Mode(mode)
	starts, err := parseTime("starts_at", in.StartsAt)
	if err != nil {
		return Campaign{}, err
	}
	if starts == nil {
		return Campaign{}, Invalid("starts_at", "is required")
	}
	ends, err := parseTime("ends_at", in.EndsAt)
	if err != nil {
		return Campaign{}, err
	}
	if ends == nil {
		return Campaign{}, Invalid("ends_at", "is required")
	}
	c.StartsAt, c.EndsAt = *starts, *ends
	if in.Stock == nil {
		return Campaign{}, Invalid("stock", "is required")
	}
	c.Stock = *in.Stock
	if in.PerUserLimit == nil {
		return Campaign{}, Invalid("per_user_limit", "is required")
	}
	c.PerUserLimit = *in.PerUserLimit
	if in.Status != nil {
		c.Status = Status(*in.Status)
	}
	if in.Buckets != nil {
		if *in.Buckets < 1 {
			return Campaign{}, Invalid("buckets", "must be between 1 and %d", MaxBuckets)
		}
		c.Buckets = *in.Buckets
	}
	if err := c.Validate(); err != nil {
		return Campaign{}, err
	}
	return c, nil
}

// DecodeCampaignPatch parses the body of PATCH /v1/campaigns/{id}. The patch is validated against the
// stored campaign by CampaignPatch.Apply; here only shape and the fixed fields are checked.
func DecodeCampaignPatch(body []byte) (CampaignPatch, error) {
	var in campaignInput
	if err := decodeStrict(body, &in); err != nil {
		return CampaignPatch{}, err
	}
	if err := refuseNulls(body); err != nil {
		return CampaignPatch{}, err
	}
	if err := in.check(); err != nil {
		return CampaignPatch{}, err
	}
	if in.Mode != nil {
		return CampaignPatch{}, Invalid("mode", "is fixed at creation")
	}
	if in.Buckets != nil {
		return CampaignPatch{}, Invalid("buckets", "is fixed at creation")
	}
	var p CampaignPatch
	p.Name = in.Name
	if in.Benefit != nil {
		b, err := in.Benefit.toBenefit()
		if err != nil {
			return CampaignPatch{}, err
		}
		p.Benefit = &b
	}
	if in.Audience != nil {
		a, err := in.Audience.toAudience()
		if err != nil {
			return CampaignPatch{}, err
		}
		p.Audience = &a
	}
	p.CostPoints = in.CostPoints
	var err error
	if p.StartsAt, err = parseTime("starts_at", in.StartsAt); err != nil {
		return CampaignPatch{}, err
	}
	if p.EndsAt, err = parseTime("ends_at", in.EndsAt); err != nil {
		return CampaignPatch{}, err
	}
	p.Stock = in.Stock
	p.PerUserLimit = in.PerUserLimit
	if in.Status != nil {
		s := Status(*in.Status)
		p.Status = &s
	}
	if p.Empty() {
		return CampaignPatch{}, Invalid("", "a patch must change at least one writable field")
	}
	return p, nil
}

type userInput struct {
	readOnly
	Points       json.RawMessage `json:"points"`
	RegisteredAt *string         `json:"registered_at"`
	Member       *bool           `json:"member"`
}

// DecodeUserPut parses the body of PUT /v1/users/{id}. registered_at is required; member defaults to
// false. Points are changed only through the points route, so a points field here is refused.
func DecodeUserPut(body []byte) (UserPut, error) {
	var in userInput
	if err := decodeStrict(body, &in); err != nil {
		return UserPut{}, err
	}
	if err := refuseNulls(body); err != nil {
		return UserPut{}, err
	}
	if err := in.check(); err != nil {
		return UserPut{}, err
	}
	if in.Points != nil {
		return UserPut{}, Invalid("points", "is changed only through POST /v1/users/{id}/points")
	}
	t, err := parseTime("registered_at", in.RegisteredAt)
	if err != nil {
		return UserPut{}, err
	}
	if t == nil {
		return UserPut{}, Invalid("registered_at", "is required")
	}
	u := UserPut{RegisteredAt: *t}
	if in.Member != nil {
		u.Member = *in.Member
	}
	return u, nil
}

type pointsInput struct {
	Delta     *int64  `json:"delta"`
	RequestID *string `json:"request_id"`
}

// DecodePointsCredit parses the body of POST /v1/users/{id}/points.
func DecodePointsCredit(body []byte) (PointsCredit, error) {
	var in pointsInput
	if err := decodeStrict(body, &in); err != nil {
		return PointsCredit{}, err
	}
	if err := refuseNulls(body); err != nil {
		return PointsCredit{}, err
	}
	if in.Delta == nil {
		return PointsCredit{}, Invalid("delta", "is required")
	}
	if *in.Delta <= 0 || *in.Delta > MaxPointsDelta {
		return PointsCredit{}, Invalid("delta", "must be a positive integer up to %d", MaxPointsDelta)
	}
	if in.RequestID == nil {
		return PointsCredit{}, Invalid("request_id", "is required")
	}
	if !ValidRequestID(*in.RequestID) {
		return PointsCredit{}, Invalid("request_id", "must be 1 to %d printable characters", MaxIDLength)
	}
	return PointsCredit{Delta: *in.Delta, RequestID: *in.RequestID}, nil
}

type claimInput struct {
	CampaignID *string `json:"campaign_id"`
	RequestID  *string `json:"request_id"`
}

// reservedRequestPrefix marks request ids the timer uses for scheduled grants; a client may not use it,
// or a claim could collide with a grant on the (user, request_id) key.
const reservedRequestPrefix = "grant:"

// DecodeClaimRequest parses the body of POST /v1/claims.
func DecodeClaimRequest(body []byte) (ClaimRequest, error) {
	var in claimInput
	if err := decodeStrict(body, &in); err != nil {
		return ClaimRequest{}, err
	}
	if err := refuseNulls(body); err != nil {
		return ClaimRequest{}, err
	}
	if in.CampaignID == nil {
		return ClaimRequest{}, Invalid("campaign_id", "is required")
	}
	if !ValidID(*in.CampaignID) {
		return ClaimRequest{}, Invalid("campaign_id", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxIDLength)
	}
	if in.RequestID == nil {
		return ClaimRequest{}, Invalid("request_id", "is required")
	}
	if !ValidRequestID(*in.RequestID) {
		return ClaimRequest{}, Invalid("request_id", "must be 1 to %d printable characters", MaxIDLength)
	}
	if strings.HasPrefix(*in.RequestID, reservedRequestPrefix) {
		return ClaimRequest{}, Invalid("request_id", "must not start with %q, which scheduled grants use", reservedRequestPrefix)
	}
	return ClaimRequest{CampaignID: *in.CampaignID, RequestID: *in.RequestID}, nil
}
