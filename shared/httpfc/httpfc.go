// Package httpfc serves an ordinary http.Handler from an FC 3.0 HTTP trigger. FC 3.0 invokes an event
// function with events.HTTPTriggerEvent and expects events.HTTPTriggerResponse (fc.StartHttp is the
// deprecated 2.0 model), so the conversion lives here, once, and every route stays testable with
// httptest.
package httpfc

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/shared/obs"
)

// Handler returns the function FC invokes for each HTTP request.
func Handler(h http.Handler, log *slog.Logger) func(context.Context, events.HTTPTriggerEvent) (*events.HTTPTriggerResponse, error) {
	return func(ctx context.Context, ev events.HTTPTriggerEvent) (*events.HTTPTriggerResponse, error) {
		ctx = obs.Invocation(ctx, log)
		req, err := Request(ctx, ev)
		if err != nil {
			obs.Logger(ctx).Warn("malformed HTTP trigger event", "error", err)
			return &events.HTTPTriggerResponse{
				StatusCode: http.StatusBadRequest,
				Headers:    map[string]string{"Content-Type": "application/json"},
				Body:       `{"error":{"code":"invalid_request","message":"malformed request"}}`,
			}, nil
		}
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		return rec.response(), nil
	}
}

// Request rebuilds the *http.Request the client sent from the trigger event.
func Request(ctx context.Context, ev events.HTTPTriggerEvent) (*http.Request, error) {
	method := deref(ev.TriggerContext.Http.Method)
	if method == "" {
		method = http.MethodGet
	}
	path := deref(ev.RawPath)
	if path == "" {
		path = deref(ev.TriggerContext.Http.Path)
	}
	if path == "" {
		path = "/"
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, err
	}
	if ev.QueryParameters != nil && len(*ev.QueryParameters) > 0 {
		q := url.Values{}
		for k, v := range *ev.QueryParameters {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	body := []byte(deref(ev.Body))
	if ev.IsBase64Encoded != nil && *ev.IsBase64Encoded && len(body) > 0 {
		body, err = base64.StdEncoding.DecodeString(string(body))
		if err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if ev.Headers != nil {
		for k, v := range *ev.Headers {
			req.Header.Set(k, v)
		}
	}
	req.Host = req.Header.Get("Host")
	if req.Host == "" {
		req.Host = deref(ev.TriggerContext.DomainName)
	}
	req.RemoteAddr = deref(ev.TriggerContext.Http.SourceIp)
	req.RequestURI = u.RequestURI()
	return req, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *recorder) response() *events.HTTPTriggerResponse {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	headers := make(map[string]string, len(r.header))
	keys := make([]string, 0, len(r.header))
	for k := range r.header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// The trigger response carries one value per header; repeated values are folded as RFC 9110 allows.
		headers[k] = strings.Join(r.header[k], ", ")
	}
	resp := &events.HTTPTriggerResponse{StatusCode: status, Headers: headers}
	if utf8.Valid(r.body.Bytes()) {
		resp.Body = r.body.String()
	} else {
		resp.Body = base64.StdEncoding.EncodeToString(r.body.Bytes())
		resp.IsBase64Encoded = true
	}
	return resp
}
