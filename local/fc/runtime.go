// Package fc emulates Function Compute 3.0 on one machine: it reads template.yml, runs each function's
// compiled binary as a process speaking the FC runtime API (the endpoints and headers that
// fc-runtime-go-sdk's fc/runtime_api_client.go uses), keeps a pool of instances per function, and
// wires the declared triggers: HTTP routes, timers and RocketMQ (EventBridge) sources.
package fc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/fctemplate"
)

const runtimeAPIPrefix = "/2020-11-11/runtime/invocation/"

// maxResponse is FC's limit on a synchronous invocation's response (16 MB).
const maxResponse = 16 << 20

// InvokeError is the error a function reported (fc/messages/messages.go InvokeResponse_Error), or the
// platform's own when the instance timed out or died.
type InvokeError struct {
	Message string   `json:"errorMessage"`
	Type    string   `json:"errorType"`
	Stack   []string `json:"stackTrace,omitempty"`
}

func (e *InvokeError) Error() string { return e.Type + ": " + e.Message }

type outcome struct {
	body []byte
	err  *InvokeError
}

// result keeps a nil *InvokeError from becoming a non-nil error.
func (o outcome) result() ([]byte, error) {
	if o.err != nil {
		return o.body, o.err
	}
	return o.body, nil
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	timeout  int
	retry    int
	done     chan outcome
}

// function is one declared function and its instance pool.
type function struct {
	e      *Emulator
	def    fctemplate.Function
	binary string
	args   []string // a custom runtime's command arguments
	env    []string
	http   map[string]bool // methods of its HTTP trigger; nil without one
	custom bool            // a custom runtime: an HTTP server per instance, not the runtime API

	fixedOnce sync.Once
	fixed     http.Header // fixedHeaders; shared, never modified after it is built

	mu        sync.Mutex
	cond      *sync.Cond
	instances []*instance
	seq       int
	started   int // instances ever started, for tests and logs
}

type instance struct {
	fn     *function
	id     string
	ln     net.Listener
	srv    *http.Server
	cmd    *exec.Cmd
	queue  chan *invocation
	active int // guarded by fn.mu

	// A custom runtime's server: where it listens, closed once it accepts connections, and how many
	// requests are being forwarded to it.
	addr      string
	listening chan struct{}
	forwarded atomic.Int32

	mu       sync.Mutex
	inflight map[string]*invocation
	dead     chan struct{}
	retired  atomic.Bool // killed, not yet reaped: takes no new invocations
}

func (e *Emulator) newFunction(def fctemplate.Function) (*function, error) {
	code := def.Code
	if !filepath.IsAbs(code) {
		code = filepath.Join(e.cfg.Root, code)
	}
	binary := filepath.Join(code, def.Handler)
	var args []string
	if def.IsCustomRuntime() && def.CustomRuntimeConfig != nil && len(def.CustomRuntimeConfig.Command) > 0 {
		// FC unpacks the code in /code; here it stays where template.yml's code path points.
		cmd := def.CustomRuntimeConfig.Command
		binary = filepath.Join(code, strings.TrimPrefix(cmd[0], "/code/"))
		args = append(append([]string{}, cmd[1:]...), def.CustomRuntimeConfig.Args...)
	}
	if st, err := os.Stat(binary); err != nil || st.IsDir() {
		return nil, fmt.Errorf("function %s: no binary at %s (run make build)", def.FunctionName, binary)
	}
	env := os.Environ()
	vars := e.cfg.Template.Vars
	getenv := func(k string) string {
		if v, ok := e.cfg.Env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	for k, v := range def.Environment(vars, getenv) {
		env = append(env, k+"="+v)
	}
	for k, v := range e.cfg.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range e.cfg.FunctionEnv[def.FunctionName] {
		env = append(env, k+"="+v) // the last value of a name wins in exec
	}
	env = append(env,
		"FC_FUNCTION_NAME="+def.FunctionName, "FC_FUNCTION_HANDLER="+def.Handler,
		"FC_FUNCTION_MEMORY_SIZE="+strconv.Itoa(def.MemorySize), "FC_REGION="+e.cfg.Region,
		"FC_ACCOUNT_ID="+e.cfg.AccountID, "FC_RUNTIME="+def.Runtime, "FC_FUNC_CODE_PATH="+code,
	)
	methods, err := httpMethods(def)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", def.FunctionName, err)
	}
	f := &function{e: e, def: def, binary: binary, args: args, env: env, http: methods, custom: def.IsCustomRuntime()}
	f.cond = sync.NewCond(&f.mu)
	return f, nil
}

func (f *function) concurrency() int {
	if f.def.InstanceConcurrency > 0 {
		return f.def.InstanceConcurrency
	}
	return 1
}

// acquire finds an instance with a free slot, starting one while the pool is below its limit.
func (f *function) acquire(ctx context.Context) (*instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if f.e.closing() {
			return nil, errors.New("emulator is shutting down")
		}
		for _, in := range f.instances {
			if in.active < f.concurrency() && !in.isDead() && !in.retired.Load() {
				in.active++
				return in, nil
			}
		}
		if len(f.instances) < f.e.cfg.MaxInstances {
			in, err := f.startInstance()
			if err != nil {
				return nil, err
			}
			in.active++
			return in, nil
		}
		f.cond.Wait()
	}
}

func (f *function) release(in *instance) {
	f.mu.Lock()
	in.active--
	f.cond.Broadcast()
	f.mu.Unlock()
}

// startInstance runs a new process with its own runtime API endpoint (go1) or its own HTTP port (a
// custom runtime); called with f.mu held.
func (f *function) startInstance() (*instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.seq++
	f.started++
	in := &instance{
		fn: f, id: fmt.Sprintf("%s-%d", f.def.FunctionName, f.seq),
		queue: make(chan *invocation, f.concurrency()), inflight: map[string]*invocation{}, dead: make(chan struct{}),
	}
	cmd := exec.Command(f.binary, f.args...)
	cmd.Env = append(append([]string{}, f.env...), "FC_INSTANCE_ID="+in.id)
	if f.custom {
		// The server must listen on the port itself: hand it a free one (FC gives every instance its
		// own network, so customRuntimeConfig.port never collides there).
		in.addr = ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(in.addr)
		cmd.Env = append(cmd.Env, "FC_SERVER_PORT="+port)
		in.listening = make(chan struct{})
	} else {
		in.ln = ln
		in.srv = &http.Server{Handler: http.HandlerFunc(in.serveRuntimeAPI), ReadHeaderTimeout: 10 * time.Second}
		go in.srv.Serve(ln)
		cmd.Env = append(cmd.Env, "FC_RUNTIME_API="+ln.Addr().String())
	}
	out := f.e.functionOutput(f.def.FunctionName)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		if in.srv != nil {
			in.srv.Close()
		}
		return nil, fmt.Errorf("start %s: %w", f.binary, err)
	}
	in.cmd = cmd
	f.instances = append(f.instances, in)
	f.e.log.Debug("instance started", "function", f.def.FunctionName, "instance", in.id, "pid", cmd.Process.Pid)
	go in.wait()
	if f.custom {
		go in.awaitListening()
	}
	return in, nil
}

// awaitListening closes in.listening once the custom runtime's server accepts connections: FC sends
// nothing to an instance before its port is open.
func (in *instance) awaitListening() {
	for {
		c, err := net.DialTimeout("tcp", in.addr, time.Second)
		if err == nil {
			c.Close()
			close(in.listening)
			return
		}
		select {
		case <-in.dead:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (in *instance) isDead() bool {
	select {
	case <-in.dead:
		return true
	default:
		return false
	}
}

// wait reaps the process; every invocation it held fails, as FC fails them when an instance crashes.
func (in *instance) wait() {
	err := in.cmd.Wait()
	close(in.dead)
	if in.srv != nil {
		in.srv.Close()
	}
	in.mu.Lock()
	for id, inv := range in.inflight {
		inv.done <- outcome{err: &InvokeError{Type: "InstanceExited", Message: fmt.Sprintf("instance %s exited: %v", in.id, err)}}
		delete(in.inflight, id)
	}
	in.mu.Unlock()
	f := in.fn
	f.mu.Lock()
	for i, x := range f.instances {
		if x == in {
			f.instances = append(f.instances[:i], f.instances[i+1:]...)
			break
		}
	}
	f.cond.Broadcast()
	f.mu.Unlock()
	if !f.e.closing() {
		f.e.log.Debug("instance exited", "function", f.def.FunctionName, "instance", in.id, "err", err)
	}
}

func (in *instance) kill() {
	in.retired.Store(true)
	if in.cmd != nil && in.cmd.Process != nil {
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// serveRuntimeAPI is the per-instance runtime API: GET next blocks until an invocation is assigned
// to this instance; POST {id}/response and {id}/error complete it.
func (in *instance) serveRuntimeAPI(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, runtimeAPIPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if rest == "next" && r.Method == http.MethodGet {
		select {
		case inv := <-in.queue:
			in.mu.Lock()
			in.inflight[inv.id] = inv
			in.mu.Unlock()
			h := w.Header()
			h.Set("Content-Type", "application/json")
			in.fn.setRequestHeaders(h, inv.id, inv.timeout, inv.retry)
			h.Set("x-fc-function-deadline", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
			h.Set("x-fc-function-type", "0")
			h.Set("x-fc-service-name", in.fn.e.cfg.ServiceName)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(inv.payload)
		case <-r.Context().Done():
		case <-in.dead:
		}
		return
	}
	id, verb, ok := strings.Cut(rest, "/")
	if !ok || r.Method != http.MethodPost || (verb != "response" && verb != "error") {
		http.Error(w, `{"errorMessage":"unknown runtime API route"}`, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxResponse+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tooLarge := len(body) > maxResponse
	in.mu.Lock()
	inv, ok := in.inflight[id]
	delete(in.inflight, id)
	in.mu.Unlock()
	if !ok {
		// A late answer to an invocation that already timed out: accepted and dropped, as FC does.
		w.WriteHeader(http.StatusOK)
		return
	}
	res := outcome{body: body}
	if tooLarge {
		res = outcome{err: &InvokeError{Type: "ResponseTooLarge", Message: fmt.Sprintf("the function answered more than %d bytes", maxResponse)}}
	} else if verb == "error" {
		var ie InvokeError
		if json.Unmarshal(body, &ie) != nil || ie.Message == "" {
			ie = InvokeError{Type: "UnhandledError", Message: string(body)}
		}
		res = outcome{err: &ie}
	}
	inv.done <- res
	w.WriteHeader(http.StatusOK)
}

// invoke runs one invocation on some instance and waits for its result, at most the function's
// timeout; an instance that overruns is killed, as FC recycles it.
func (f *function) invoke(ctx context.Context, payload []byte, retry int) ([]byte, error) {
	if f.custom {
		return f.invokeCustom(ctx, payload, retry)
	}
	in, err := f.acquire(ctx)
	if err != nil {
		return nil, &InvokeError{Type: "ResourceExhausted", Message: err.Error()}
	}
	defer f.release(in)
	timeout := f.timeout()
	inv := &invocation{
		id: newRequestID(), payload: payload, timeout: timeout, retry: retry,
		deadline: time.Now().Add(time.Duration(timeout) * time.Second), done: make(chan outcome, 1),
	}
	select {
	case in.queue <- inv:
	case <-in.dead:
		return nil, &InvokeError{Type: "InstanceExited", Message: "instance exited before the invocation started"}
	}
	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		// The caller gave up (a client went away, the emulator is closing); the instance finishes
		// the invocation on its own and its late answer is dropped.
		return nil, &InvokeError{Type: "Cancelled", Message: ctx.Err().Error()}
	case res := <-inv.done:
		return res.result()
	case <-timer.C:
		in.kill()
		return nil, &InvokeError{Type: "FunctionTimeout", Message: fmt.Sprintf("%s timed out after %ds", f.def.FunctionName, timeout)}
	case <-in.dead:
		select {
		case res := <-inv.done:
			return res.result()
		default:
			return nil, &InvokeError{Type: "InstanceExited", Message: "instance exited during the invocation"}
		}
	}
}

// setRequestHeaders sets the x-fc-* headers that name an invocation and its function, as both the
// runtime API (go1) and a custom runtime's forwarded requests carry them. The keys are written in
// canonical form straight into the map, and the function's own values are built once: this runs for
// every request an HTTP trigger forwards.
func (f *function) setRequestHeaders(h http.Header, requestID string, timeout, retry int) {
	for k, v := range f.fixedHeaders() {
		h[k] = v
	}
	h["X-Fc-Request-Id"] = []string{requestID}
	h["X-Fc-Function-Timeout"] = []string{strconv.Itoa(timeout)}
	h["X-Fc-Retry-Count"] = []string{strconv.Itoa(retry)}
}

// fixedHeaders are the x-fc-* headers whose values are the function's, the same for every request.
func (f *function) fixedHeaders() http.Header {
	f.fixedOnce.Do(func() {
		def := f.def
		f.fixed = http.Header{
			"X-Fc-Function-Name":    {def.FunctionName},
			"X-Fc-Function-Handler": {def.Handler},
			"X-Fc-Function-Memory":  {strconv.Itoa(def.MemorySize)},
			"X-Fc-Region":           {f.e.cfg.Region},
			"X-Fc-Account-Id":       {f.e.cfg.AccountID},
			"X-Fc-Qualifier":        {"LATEST"},
			"X-Fc-Version-Id":       {"LATEST"},
		}
	})
	return f.fixed
}

func (f *function) timeout() int {
	if f.def.Timeout <= 0 {
		return 3
	}
	return f.def.Timeout
}

func newRequestID() string {
	var b [16]byte
	_, _ = io.ReadFull(randReader, b[:])
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// prefixWriter writes each line of a function's output with the function's name in front.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix []byte
	buf    bytes.Buffer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for {
		line, err := p.buf.ReadBytes('\n')
		if err != nil {
			p.buf.Write(line)
			return len(b), nil
		}
		_, _ = p.w.Write(append(append([]byte{}, p.prefix...), line...))
	}
}
