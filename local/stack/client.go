package stack

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls the stack's HTTP triggers as a user or operator would: JSON in, JSON out.
type Client struct {
	Base string // e.g. http://127.0.0.1:9000
	HTTP *http.Client
}

// NewClient is a client for base with a 30 s timeout per call.
func NewClient(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Reply is an answer with its body decoded when it is a JSON object.
type Reply struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// Code is the error code of an error envelope, "" for other answers.
func (r Reply) Code() string {
	if e, ok := r.Body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

// Field walks the decoded body, e.g. Field("campaign", "id"); nil where the path is missing.
func (r Reply) Field(path ...string) any {
	var v any = r.Body
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// Do sends a request. body is marshalled to JSON, or sent as is when it is a string; headers are
// name/value pairs.
func (c *Client) Do(method, path, token string, body any, headers ...string) (Reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return Reply{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return Reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Reply{}, err
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r, nil
}
