// Package httpfc serves an ordinary http.Handler from an FC 3.0 HTTP trigger, either way FC runs a Go
// function: as go1, FC 3.0 invokes an event function with events.HTTPTriggerEvent and expects
// events.HTTPTriggerResponse (fc.StartHttp is the deprecated 2.0 model), so the conversion lives here,
// once; as a custom runtime, FC forwards the request itself to the function's HTTP server (Serve).
// Every route stays testable with httptest.
package httpfc

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aliyun/fc-runtime-go-sdk/events"
	"github.com/aliyun/fc-runtime-go-sdk/fc"

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

// RequestIDHeader names the FC request on each request FC forwards to a custom runtime.
const RequestIDHeader = "x-fc-request-id"

// ServeArg is the argument (customRuntimeConfig.args in template.yml) that starts a function as a
// custom runtime's HTTP server instead of a go1 handler.
const ServeArg = "serve"

// Run serves h the way the function was deployed: as a custom runtime's HTTP server when started with
// ServeArg, else as a go1 function through fc.Start. Both paths run the same handler.
func Run(h http.Handler, log *slog.Logger) {
	if len(os.Args) > 1 && os.Args[1] == ServeArg {
		if err := Serve(h, log, os.Getenv("FC_SERVER_PORT")); err != nil {
			log.Error("custom runtime server stopped", "error", err.Error())
			os.Exit(1)
		}
		return
	}
	fc.Start(Handler(h, log))
}

// Serve is a custom runtime: FC forwards each HTTP trigger request as it came to the instance's server
// on port (customRuntimeConfig.port; "" for FC's default 9000), many at once up to the function's
// instanceConcurrency. It returns when SIGTERM has let the requests in progress finish.
func Serve(h http.Handler, log *slog.Logger, port string) error {
	if port == "" {
		port = "9000"
	}
	srv := &http.Server{Addr: "0.0.0.0:" + port, Handler: WithRequestLog(h, log), ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	done := make(chan error, 1)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return <-done
}

// WithRequestLog names the FC request on every log line of the request, as obs.Invocation does for go1.
func WithRequestLog(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(obs.WithRequest(r.Context(), log, r.Header.Get(RequestIDHeader))))
	})
}
