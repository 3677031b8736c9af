package fc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/local/fctemplate"
)

var randReader = rand.Reader

// Config sets the emulator up.
type Config struct {
	Template *fctemplate.Template
	Root     string            // the folder template.yml's code paths are relative to
	Env      map[string]string // set for every function, over template.yml's values
	// FunctionEnv is set for one function (by functionName), over Env.
	FunctionEnv map[string]map[string]string
	HTTPAddr    string // HTTP triggers and /_local routes, e.g. 127.0.0.1:9000
	// BrokerEndpoint is the RocketMQ endpoint the RocketMQ triggers consume from.
	BrokerEndpoint string
	// TimeScale multiplies the triggers' retry backoff (1 = FC's schedule).
	TimeScale float64
	// TimerTimeScale runs cron schedules on a clock that many times faster than the wall clock
	// (0 or 1: real time): a fault suite sees a minute timer fire every few seconds, in the same
	// order and with the same relative spacing as on the platform.
	TimerTimeScale float64
	// MaxRetries, when positive, caps every RocketMQ trigger's retries below its strategy's (176 for
	// EXPONENTIAL_DECAY_RETRY), so a test reaches the dead-letter queue in seconds.
	MaxRetries int
	// MaxInstances caps each function's instance pool (FC's default per-function limit is far
	// higher; one machine is not).
	MaxInstances int
	// Timers: false leaves cron schedules off, so only /_local/timers runs them (tests).
	Timers      bool
	Output      io.Writer // the functions' own output, prefixed with their names
	Logger      *slog.Logger
	Region      string
	AccountID   string
	ServiceName string
}

// Emulator runs the functions of one template.
type Emulator struct {
	cfg       Config
	log       *slog.Logger
	functions map[string]*function
	routes    []fctemplate.Route
	srv       *http.Server
	ln        net.Listener
	outMu     sync.Mutex
	ready     atomic.Bool
	shutting  atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	consumers []*mqTrigger
}

// Start builds every function, listens for HTTP and starts the triggers.
func Start(cfg Config) (*Emulator, error) {
	if cfg.Template == nil {
		return nil, errors.New("fc: a template is required")
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = 4
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "0000000000000000"
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = cfg.Template.Name
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{cfg: cfg, log: cfg.Logger, functions: map[string]*function{}, routes: cfg.Template.Routes(), ctx: ctx, cancel: cancel}
	for _, def := range cfg.Template.Functions() {
		f, err := e.newFunction(def)
		if err != nil {
			cancel()
			return nil, err
		}
		e.functions[def.FunctionName] = f
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fc: listen for HTTP triggers: %w", err)
	}
	e.ln = ln
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go e.srv.Serve(ln)
	if err := e.startTriggers(); err != nil {
		e.Close()
		return nil, err
	}
	e.ready.Store(true)
	return e, nil
}

// Addr is where HTTP triggers listen.
func (e *Emulator) Addr() string { return e.ln.Addr().String() }

func (e *Emulator) closing() bool { return e.shutting.Load() }

// Close stops the triggers, then every instance.
func (e *Emulator) Close() {
	if e.shutting.Swap(true) {
		return
	}
	e.ready.Store(false)
	e.cancel()
	for _, c := range e.consumers {
		c.stop()
	}
	e.wg.Wait()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = e.srv.Shutdown(shutdown)
	cancel()
	for _, f := range e.functions {
		f.mu.Lock()
		ins := append([]*instance{}, f.instances...)
		f.cond.Broadcast()
		f.mu.Unlock()
		for _, in := range ins {
			in.kill()
			<-in.dead
		}
	}
}

// Invoke runs a function synchronously with an event payload.
func (e *Emulator) Invoke(ctx context.Context, name string, payload []byte) ([]byte, error) {
	f, ok := e.functions[name]
	if !ok {
		return nil, fmt.Errorf("fc: no function %q", name)
	}
	return f.invoke(ctx, payload, 0)
}

// instancesOf is a snapshot of a function's instances (none for an unknown function).
func (e *Emulator) instancesOf(name string) []*instance {
	f, ok := e.functions[name]
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*instance{}, f.instances...)
}

// KillInstances kills every running instance of a function, as a host failure would; invocations
// in flight fail and the next one starts a new instance.
func (e *Emulator) KillInstances(name string) int {
	ins := e.instancesOf(name)
	for _, in := range ins {
		in.kill()
	}
	return len(ins)
}

// InFlight counts the invocations a function's instances are running now.
func (e *Emulator) InFlight(name string) int {
	n := 0
	for _, in := range e.instancesOf(name) {
		n += int(in.forwarded.Load())
		in.mu.Lock()
		n += len(in.inflight)
		in.mu.Unlock()
	}
	return n
}

// InstancesStarted counts the instances a function has started so far.
func (e *Emulator) InstancesStarted(name string) int {
	f, ok := e.functions[name]
	if !ok {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

func (e *Emulator) functionOutput(name string) io.Writer {
	return &prefixWriter{mu: &e.outMu, w: e.cfg.Output, prefix: []byte(fmt.Sprintf("%-9s| ", name))}
}

func (e *Emulator) startTriggers() error {
	names := make([]string, 0, len(e.functions))
	for n := range e.functions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := e.functions[name]
		for _, tr := range f.def.Triggers {
			switch tr.TriggerType {
			case fctemplate.TriggerHTTP:
				// served by ServeHTTP through the domain's routes
			case fctemplate.TriggerTimer:
				tc, err := tr.Timer()
				if err != nil {
					return err
				}
				if e.cfg.Timers && tc.Enable {
					sched, err := tc.Schedule()
					if err != nil {
						return err
					}
					e.wg.Add(1)
					go e.runTimer(f, tr.TriggerName, tc, sched)
				}
			case fctemplate.TriggerEventBridge:
				ec, err := tr.EventBridge()
				if err != nil {
					return err
				}
				src, ok := ec.RocketMQ()
				if !ok || !ec.TriggerEnable {
					continue
				}
				if e.cfg.BrokerEndpoint == "" {
					e.log.Warn("RocketMQ trigger not wired: no broker endpoint", "function", name, "trigger", tr.TriggerName)
					continue
				}
				c, err := e.startMQTrigger(f, tr.TriggerName, ec, src)
				if err != nil {
					return fmt.Errorf("fc: trigger %s/%s: %w", name, tr.TriggerName, err)
				}
				e.consumers = append(e.consumers, c)
			default:
				e.log.Warn("trigger type not emulated", "function", name, "trigger", tr.TriggerName, "type", tr.TriggerType)
			}
		}
	}
	return nil
}

// timerEvent is what FC sends a timer-triggered function (events.TimerEvent).
func timerEvent(trigger, payload string, at time.Time) []byte {
	t := at.UTC().Format(time.RFC3339)
	b, _ := json.Marshal(events.TimerEvent{TriggerTime: &t, TriggerName: &trigger, Payload: &payload})
	return b
}

type cronSchedule interface{ Next(time.Time) time.Time }

func (e *Emulator) runTimer(f *function, trigger string, tc fctemplate.TimerTriggerConfig, sched cronSchedule) {
	defer e.wg.Done()
	speed := e.cfg.TimerTimeScale
	if speed <= 0 {
		speed = 1
	}
	// The schedule runs on a virtual clock that starts at the wall clock and advances speed times faster.
	start := time.Now()
	virtual := func() time.Time { return start.Add(time.Duration(float64(time.Since(start)) * speed)) }
	for {
		now := virtual()
		next := sched.Next(now)
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(time.Duration(float64(next.Sub(now)) / speed)):
		}
		// FC invokes timer functions asynchronously: a long run does not delay the schedule.
		go func() {
			if _, err := f.invoke(e.ctx, timerEvent(trigger, tc.Payload, time.Now()), 0); err != nil && e.ctx.Err() == nil {
				e.log.Warn("timer invocation failed", "function", f.def.FunctionName, "trigger", trigger, "err", err)
			}
		}()
	}
}

// ServeHTTP routes /_local endpoints and the HTTP triggers.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_local/health":
		if !e.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "functions": len(e.functions)})
		return
	case strings.HasPrefix(r.URL.Path, "/_local/timers/"):
		e.serveTimer(w, r)
		return
	}
	route, ok := e.route(r.URL.Path, r.Method)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	f, ok := e.functions[route.FunctionName]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "route names no function "+route.FunctionName)
		return
	}
	methods := f.http
	if methods == nil {
		writeError(w, http.StatusNotFound, "not_found", "function "+f.def.FunctionName+" has no HTTP trigger")
		return
	}
	if !methods[r.Method] {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed by the HTTP trigger")
		return
	}
	if f.custom {
		f.serveCustomHTTP(w, r)
		return
	}
	payload, err := httpEvent(r, e.cfg.AccountID)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", err.Error())
		return
	}
	out, err := f.invoke(r.Context(), payload, 0)
	if err != nil {
		writeInvokeError(w, err)
		return
	}
	var resp events.HTTPTriggerResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode == 0 {
		writeError(w, http.StatusBadGateway, "function_error", "the function's answer is not an HTTP trigger response")
		return
	}
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			writeError(w, http.StatusBadGateway, "function_error", "response body is not valid base64")
			return
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// httpMethods reads the methods of the function's HTTP trigger once, at start; nil without one.
func httpMethods(def fctemplate.Function) (map[string]bool, error) {
	for _, tr := range def.Triggers {
		if tr.TriggerType != fctemplate.TriggerHTTP {
			continue
		}
		hc, err := tr.HTTP()
		if err != nil {
			return nil, err
		}
		m := map[string]bool{}
		for _, x := range hc.Methods {
			m[strings.ToUpper(x)] = true
		}
		return m, nil
	}
	return nil, nil
}

// route matches the custom domain's routes: an exact path, or a prefix ending in "/*".
func (e *Emulator) route(path, method string) (fctemplate.Route, bool) {
	for _, r := range e.routes {
		if len(r.Methods) > 0 && !containsFold(r.Methods, method) {
			continue
		}
		if prefix, ok := strings.CutSuffix(r.Path, "*"); ok {
			if strings.HasPrefix(path, prefix) {
				return r, true
			}
			continue
		}
		if r.Path == path {
			return r, true
		}
	}
	return fctemplate.Route{}, false
}

func containsFold(xs []string, x string) bool {
	for _, v := range xs {
		if strings.EqualFold(v, x) {
			return true
		}
	}
	return false
}

const maxHTTPEventBody = 6 << 20 // FC's synchronous invocation payload limit

// httpEvent builds the FC 3.0 HTTP trigger event for a request.
func httpEvent(r *http.Request, account string) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHTTPEventBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxHTTPEventBody {
		return nil, fmt.Errorf("request body over %d bytes", maxHTTPEventBody)
	}
	headers := map[string]string{}
	for k, v := range r.Header {
		headers[k] = strings.Join(v, ",")
	}
	// FC hands a function one value per key: a repeated header or query key arrives comma-joined.
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	b64 := !utf8.Valid(body)
	text := string(body)
	if b64 {
		text = base64.StdEncoding.EncodeToString(body)
	}
	now := time.Now()
	// rawPath is the path as sent, without the query: FC passes the query in queryParameters.
	raw := r.URL.EscapedPath()
	version, method, path, proto := "v1", r.Method, r.URL.Path, r.Proto
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ua, reqID := r.UserAgent(), newRequestID()
	domain, prefix := r.Host, strings.Split(r.Host, ".")[0]
	ts, epoch := now.UTC().Format("02/Jan/2006:15:04:05 -0700"), strconv.FormatInt(now.UnixMilli(), 10)
	ev := events.HTTPTriggerEvent{
		Version: &version, RawPath: &raw, Body: &text, IsBase64Encoded: &b64, Headers: &headers, QueryParameters: &query,
	}
	ev.TriggerContext.AccountId, ev.TriggerContext.DomainName, ev.TriggerContext.DomainPrefix = &account, &domain, &prefix
	ev.TriggerContext.Http.Method, ev.TriggerContext.Http.Path, ev.TriggerContext.Http.Protocol = &method, &path, &proto
	ev.TriggerContext.Http.SourceIp, ev.TriggerContext.Http.UserAgent = &host, &ua
	ev.TriggerContext.RequestId, ev.TriggerContext.Time, ev.TriggerContext.TimeEpoch = &reqID, &ts, &epoch
	return json.Marshal(ev)
}

func (e *Emulator) serveTimer(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/_local/timers/"), "/")
	if len(parts) != 2 {
		writeError(w, http.StatusNotFound, "not_found", "use /_local/timers/{function}/{trigger}")
		return
	}
	f, ok := e.functions[parts[0]]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no function "+parts[0])
		return
	}
	tr, ok := f.def.Trigger(parts[1])
	if !ok || tr.TriggerType != fctemplate.TriggerTimer {
		writeError(w, http.StatusNotFound, "not_found", "function "+parts[0]+" has no timer trigger "+parts[1])
		return
	}
	tc, err := tr.Timer()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	out, err := f.invoke(r.Context(), timerEvent(parts[1], tc.Payload, time.Now()), 0)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": err})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
