package fc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// A custom runtime (runtime custom.debian10 and later) is an HTTP server per instance: FC forwards an
// HTTP trigger's request to it as the client sent it, and an event invocation as POST /invoke with the
// event as the body, each with the x-fc-* headers, up to instanceConcurrency requests per instance at
// once.

// forwardTransport keeps connections to the instances' servers open between requests, as FC does.
var forwardTransport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}

// hopHeaders are the connection's own, not the request's (RFC 9110 section 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward sends one request to an instance of a custom runtime and returns its answer, at most the
// function's timeout after the request arrived; the instance's slot is held until then.
func (f *function) forward(ctx context.Context, method, path string, header http.Header, body []byte, retry int) (*http.Response, []byte, error) {
	timeout := f.timeout()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
	defer cancel()
	in, err := f.acquire(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, &InvokeError{Type: "FunctionTimeout", Message: fmt.Sprintf("%s found no free instance within %ds", f.def.FunctionName, timeout)}
		}
		return nil, nil, &InvokeError{Type: "ResourceExhausted", Message: err.Error()}
	}
	defer f.release(in)
	select {
	case <-in.listening:
	case <-in.dead:
		return nil, nil, &InvokeError{Type: "InstanceExited", Message: "instance exited before its server listened"}
	case <-ctx.Done():
		return nil, nil, f.forwardError(ctx, in, ctx.Err())
	}
	in.forwarded.Add(1)
	defer in.forwarded.Add(-1)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+in.addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, &InvokeError{Type: "InvalidRequest", Message: err.Error()}
	}
	// The request's own value slices are shared, not copied: nothing below changes one in place
	// (setRequestHeaders and Del replace or drop whole keys of this map).
	req.Header = make(http.Header, len(header)+10)
	for k, vs := range header {
		req.Header[k] = vs
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	f.setRequestHeaders(req.Header, newRequestID(), timeout, retry)
	resp, err := forwardTransport.RoundTrip(req)
	if err != nil {
		return nil, nil, f.forwardError(ctx, in, err)
	}
	defer resp.Body.Close()
	out, err := readBody(resp, maxResponse)
	if err != nil {
		return nil, nil, f.forwardError(ctx, in, err)
	}
	if len(out) > maxResponse {
		return nil, nil, &InvokeError{Type: "ResponseTooLarge", Message: fmt.Sprintf("the function answered more than %d bytes", maxResponse)}
	}
	return resp, out, nil
}

// readBody reads at most limit+1 bytes of a response, in one allocation when its length is declared
// (a claim's answer is a few hundred bytes; io.ReadAll starts at 512 and grows).
func readBody(resp *http.Response, limit int) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= int64(limit) {
		buf := make([]byte, n)
		_, err := io.ReadFull(resp.Body, buf)
		return buf, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
}

// forwardError names what ended a forwarded request. An overrun fails only that request: the
// instance's other requests go on (a go1 instance, which runs one, is recycled instead).
func (f *function) forwardError(ctx context.Context, in *instance, err error) error {
	select {
	case <-in.dead:
		return &InvokeError{Type: "InstanceExited", Message: "instance exited during the invocation"}
	default:
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &InvokeError{Type: "FunctionTimeout", Message: fmt.Sprintf("%s timed out after %ds", f.def.FunctionName, f.timeout())}
	}
	if ctx.Err() != nil {
		return &InvokeError{Type: "Cancelled", Message: ctx.Err().Error()}
	}
	// A connection the process dropped as it died may fail before its exit is reaped.
	select {
	case <-in.dead:
		return &InvokeError{Type: "InstanceExited", Message: "instance exited during the invocation"}
	case <-time.After(100 * time.Millisecond):
	}
	return &InvokeError{Type: "InstanceError", Message: err.Error()}
}

// invokeCustom is an event invocation of a custom runtime: POST /invoke with the event; a 2xx answer
// is the result, anything else the function's error.
func (f *function) invokeCustom(ctx context.Context, payload []byte, retry int) ([]byte, error) {
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, body, err := f.forward(ctx, http.MethodPost, "/invoke", h, payload, retry)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &InvokeError{Type: "UnhandledError", Message: fmt.Sprintf("%d: %s", resp.StatusCode, body)}
	}
	return body, nil
}

// serveCustomHTTP forwards an HTTP trigger's request to the function's server and its answer back.
func (f *function) serveCustomHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHTTPEventBody+1))
	if err != nil || len(body) > maxHTTPEventBody {
		writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("request body over %d bytes", maxHTTPEventBody))
		return
	}
	resp, out, err := f.forward(r.Context(), r.Method, r.URL.RequestURI(), r.Header, body, 0)
	if err != nil {
		writeInvokeError(w, err)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}

// writeInvokeError answers an HTTP trigger whose invocation failed: 504 for a timeout, 502 otherwise.
func writeInvokeError(w http.ResponseWriter, err error) {
	var ie *InvokeError
	if errors.As(err, &ie) && ie.Type == "FunctionTimeout" {
		writeError(w, http.StatusGatewayTimeout, "function_timeout", ie.Message)
		return
	}
	writeError(w, http.StatusBadGateway, "function_error", err.Error())
}
