package fc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"

	"github.com/benefit-issuance/benefits/local/fc"
	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
)

var fnDir string // holds the compiled test function as fn/main

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fc-emulator-test")
	if err != nil {
		panic(err)
	}
	fnDir = dir
	rmqclient.ConfigureClientLogging(filepath.Join(dir, "logs"))
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "fn", "main"), "./testdata/fn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the test function: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const templateText = `edition: 3.0.0
name: emulator-test
access: default
vars:
  dlq: acs:mns:local:0:/queues/fn-dlq
resources:
  fn:
    component: fc3
    props:
      region: local
      functionName: fn
      runtime: go1
      handler: main
      code: ./fn
      memorySize: 128
      timeout: 1
      instanceConcurrency: 1
      environmentVariables:
        FN_GREETING: hello
        FN_RECORD: ${env('FN_RECORD')}
      triggers:
        - triggerName: web
          triggerType: http
          triggerConfig:
            authType: anonymous
            methods: [GET, POST]
        - triggerName: tick
          triggerType: timer
          triggerConfig:
            cronExpression: '0 0 3 * * *'
            enable: true
            payload: '{"sleep_ms": 1}'
        - triggerName: queue
          triggerType: eventbridge
          triggerConfig:
            triggerEnable: true
            asyncInvocationType: false
            eventRuleFilterPattern: '{}'
            eventSinkConfig:
              deliveryOption:
                concurrency: 1
                eventSchema: CloudEvents
            runOptions:
              mode: event-streaming
              errorsTolerance: ALL
              retryStrategy:
                PushRetryStrategy: EXPONENTIAL_DECAY_RETRY
              deadLetterQueue:
                Arn: ${vars.dlq}
              batchWindow:
                CountBasedWindow: 4
                TimeBasedWindow: 1
            eventSourceConfig:
              eventSourceType: RocketMQ
              eventSourceParameters:
                sourceRocketMQParameters:
                  RegionId: local
                  InstanceId: local
                  InstanceType: Cloud_5
                  Topic: work
                  Tag: '*'
                  GroupID: GID_fn
  domain:
    component: fc3-domain
    props:
      region: local
      domainName: auto
      protocol: HTTP
      routeConfig:
        routes:
          - path: /hello/*
            functionName: fn
`

type answer struct {
	PID        int    `json:"pid"`
	Concurrent int32  `json:"concurrent"`
	RequestID  string `json:"request_id"`
	Function   string `json:"function"`
	Deadline   bool   `json:"deadline"`
	Events     int    `json:"events"`
	Env        string `json:"env"`
	Raw        string `json:"raw"`
}

func start(t *testing.T, cfg fc.Config) *fc.Emulator {
	t.Helper()
	return startTemplate(t, templateText, cfg)
}

func startTemplate(t *testing.T, text string, cfg fc.Config) *fc.Emulator {
	t.Helper()
	tpl, err := fctemplate.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Template, cfg.Root, cfg.HTTPAddr = tpl, fnDir, "127.0.0.1:0"
	e, err := fc.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func invoke(t *testing.T, e *fc.Emulator, payload string) (answer, error) {
	t.Helper()
	out, err := e.Invoke(context.Background(), "fn", []byte(payload))
	var a answer
	if out != nil {
		_ = json.Unmarshal(out, &a)
	}
	return a, err
}

func TestInvocationCarriesTheRuntimeContract(t *testing.T) {
	e := start(t, fc.Config{})
	a, err := invoke(t, e, `{"sleep_ms": 1}`)
	if err != nil {
		t.Fatal(err)
	}
	if a.Function != "fn" || a.RequestID == "" || !a.Deadline || a.Env != "hello" {
		t.Fatalf("the function saw %+v; want its name, a request id, a deadline and its environment", a)
	}
}

func TestErrorsTimeoutsAndCrashes(t *testing.T) {
	e := start(t, fc.Config{MaxInstances: 1})
	var ie *fc.InvokeError

	_, err := invoke(t, e, `{"fail": "boom"}`)
	if !errors.As(err, &ie) || !strings.Contains(ie.Message, "boom") {
		t.Fatalf("handler error = %v, want the function's message", err)
	}

	first, _ := invoke(t, e, `{}`)
	_, err = invoke(t, e, `{"sleep_ms": 3000}`) // the function's timeout is 1 s
	if !errors.As(err, &ie) || ie.Type != "FunctionTimeout" {
		t.Fatalf("overrun = %v, want FunctionTimeout", err)
	}
	after, err := invoke(t, e, `{}`)
	if err != nil || after.PID == first.PID {
		t.Fatalf("after a timeout: pid %d (before %d), err %v; want a fresh instance", after.PID, first.PID, err)
	}

	_, err = invoke(t, e, `{"exit": true}`)
	if !errors.As(err, &ie) || ie.Type != "InstanceExited" {
		t.Fatalf("crash = %v, want InstanceExited", err)
	}
	again, err := invoke(t, e, `{}`)
	if err != nil || again.PID == after.PID {
		t.Fatalf("after a crash: pid %d (crashed %d), err %v", again.PID, after.PID, err)
	}
	if n := e.InstancesStarted("fn"); n != 3 {
		t.Fatalf("instances started = %d, want 3 (first, after the timeout, after the crash)", n)
	}
}

func TestOneInvocationPerInstanceAndABoundedPool(t *testing.T) {
	e := start(t, fc.Config{MaxInstances: 3})
	var mu sync.Mutex
	pids := map[int]bool{}
	var wg sync.WaitGroup
	for range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := invoke(t, e, `{"sleep_ms": 200}`)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			pids[a.PID] = true
			if a.Concurrent != 1 {
				t.Errorf("an instance ran %d invocations at once; instanceConcurrency is 1", a.Concurrent)
			}
		}()
	}
	wg.Wait()
	if len(pids) != 3 {
		t.Fatalf("9 parallel invocations ran on %d instances, want the pool's 3", len(pids))
	}
}

func TestHTTPRoutesAndLocalEndpoints(t *testing.T) {
	e := start(t, fc.Config{})
	base := "http://" + e.Addr()
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"x":1}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("GET", "/_local/health"); code != 200 {
		t.Fatalf("health: %d %s", code, body)
	}
	// The test function answers its own JSON, not an HTTP trigger response: the emulator says so.
	if code, body := get("POST", "/hello/there?a=b"); code != http.StatusBadGateway || !strings.Contains(body, "HTTP trigger response") {
		t.Fatalf("route to fn: %d %s", code, body)
	}
	if code, _ := get("DELETE", "/hello/there"); code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE on a GET/POST trigger: %d", code)
	}
	if code, _ := get("GET", "/elsewhere"); code != 404 {
		t.Fatalf("unrouted path: %d", code)
	}
	code, body := get("POST", "/_local/timers/fn/tick")
	if code != 200 || !strings.Contains(body, `"raw":"{\"triggerTime\"`) || !strings.Contains(body, `\"triggerName\":\"tick\"`) {
		t.Fatalf("timer run: %d %s; want the timer event FC sends", code, body)
	}
	if code, _ := get("POST", "/_local/timers/fn/nope"); code != 404 {
		t.Fatalf("unknown timer trigger: %d", code)
	}
}

func TestRocketMQTriggerBatchesRetriesAndDeadLetters(t *testing.T) {
	b, srv := startBroker(t, rocketmq.Config{MaxAttempts: 1000, MinLongPolling: 100 * time.Millisecond})
	record := filepath.Join(t.TempDir(), "bodies")
	e := start(t, fc.Config{BrokerEndpoint: srv.Addr(), TimeScale: 0.001, MaxRetries: 3, Env: map[string]string{"FN_RECORD": record}})
	p := producer(t, srv.Addr())
	send := func(body string) {
		if _, err := p.Send(context.Background(), &rmq.Message{Topic: "work", Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, body := range []string{"a", "b", "c"} {
		send(body)
	}
	waitFor(t, 10*time.Second, func() bool { return len(lines(record)) == 3 })
	send("fail")
	send("d")
	dlq := e.DLQTopic("fn", "queue")
	if dlq != "fn-dlq" {
		t.Fatalf("DLQ topic %q, want fn-dlq (from the ARN)", dlq)
	}
	waitFor(t, 20*time.Second, func() bool { return b.Stats(dlq).Messages > 0 })
	// "fail" and "d" may share a batch: a failed batch is retried and dead-lettered whole, as FC does.
	got := lines(record)
	sort.Strings(got)
	if strings.Join(got[:3], ",") != "a,b,c" {
		t.Fatalf("recorded %v", got)
	}
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: srv.Addr(), ConsumerGroup: "GID_dlq_check", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(200*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{dlq: rmq.SUB_ALL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.GracefulStop()
	var dead []string
	waitFor(t, 5*time.Second, func() bool {
		mvs, _ := c.Receive(context.Background(), 4, 10*time.Second)
		for _, mv := range mvs {
			dead = append(dead, string(mv.GetBody()))
			if mv.GetProperties()["LAST_ERROR"] == "" || mv.GetProperties()["ORIGIN_TOPIC"] != "work" {
				t.Errorf("dead-lettered message lacks its origin or error: %v", mv.GetProperties())
			}
		}
		return contains(dead, "fail")
	})
	if contains(got, "fail") {
		t.Fatal("the failing message was recorded as processed")
	}
}

// The trigger runs at most deliveryOption.concurrency invocations at once, the one limit FC 3.0
// reads (FC 2.0's runOptions.maximumTasks is refused by fctemplate and means nothing here).
func TestRocketMQTriggerHonoursDeliveryConcurrency(t *testing.T) {
	for _, concurrency := range []int{1, 2} {
		t.Run(fmt.Sprint(concurrency), func(t *testing.T) {
			_, srv := startBroker(t, rocketmq.Config{MinLongPolling: 100 * time.Millisecond})
			spans := filepath.Join(t.TempDir(), "spans")
			text := strings.Replace(templateText, "concurrency: 1", fmt.Sprintf("concurrency: %d", concurrency), 1)
			startTemplate(t, text, fc.Config{BrokerEndpoint: srv.Addr(), Env: map[string]string{"FN_SPANS": spans}})
			p := producer(t, srv.Addr())
			const messages = 12 // batches of at most 4: at least 3 invocations
			for i := range messages {
				if _, err := p.Send(context.Background(), &rmq.Message{Topic: "work", Body: []byte(fmt.Sprintf("slow-%d", i))}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 20*time.Second, func() bool { return len(lines(spans)) >= messages/4 })
			time.Sleep(time.Second) // let any batch still running finish and record
			most := 0
			all := lines(spans)
			for _, a := range all {
				var aStart, aEnd int64
				fmt.Sscanf(a, "%d,%d", &aStart, &aEnd)
				overlap := 0
				for _, b := range all {
					var bStart, bEnd int64
					fmt.Sscanf(b, "%d,%d", &bStart, &bEnd)
					if bStart <= aStart && aStart < bEnd {
						overlap++
					}
				}
				most = max(most, overlap)
			}
			if most != concurrency {
				t.Fatalf("at most %d batches ran at once (%d batches), want %d", most, len(all), concurrency)
			}
		})
	}
}

// startBroker runs a local broker for the test on a free port.
func startBroker(t *testing.T, cfg rocketmq.Config) (*rocketmq.Broker, *rocketmq.Server) {
	t.Helper()
	b, err := rocketmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rocketmq.Listen(b, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); b.Close() })
	return b, srv
}

// producer sends to the test topic "work"; it stops at cleanup.
func producer(t *testing.T, endpoint string) rmq.Producer {
	t.Helper()
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: endpoint, Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("work"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.GracefulStop() })
	return p
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func lines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s", d)
}

const customTemplate = `edition: 3.0.0
name: custom-test
access: default
resources:
  fn:
    component: fc3
    props:
      region: local
      functionName: fn
      runtime: custom.debian10
      handler: main
      code: ./fn
      customRuntimeConfig:
        command: [/code/main]
        args: [serve]
        port: 9000
      memorySize: 128
      timeout: 1
      instanceConcurrency: 4
      environmentVariables:
        FN_GREETING: hello
      triggers:
        - triggerName: web
          triggerType: http
          triggerConfig:
            authType: anonymous
            methods: [GET, POST]
  domain:
    component: fc3-domain
    props:
      region: local
      domainName: auto
      protocol: HTTP
      routeConfig:
        routes:
          - path: /hello/*
            functionName: fn
`

// A custom runtime is an HTTP server per instance that takes up to instanceConcurrency requests at
// once; HTTP requests reach it as sent, events as POST /invoke.
func TestCustomRuntimeServesManyRequestsPerInstance(t *testing.T) {
	e := startTemplate(t, customTemplate, fc.Config{MaxInstances: 3})
	base := "http://" + e.Addr()
	post := func(path, body string) (int, answer, http.Header) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0, answer{}, nil
		}
		defer resp.Body.Close()
		var a answer
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &a)
		if a.Raw == "" {
			a.Raw = string(raw)
		}
		return resp.StatusCode, a, resp.Header
	}

	status, a, h := post("/hello/there?x=1", `{"sleep_ms": 1}`)
	if status != 200 || a.Raw != `POST /hello/there?x=1 {"sleep_ms": 1}` || h.Get("X-Fn") != "custom" {
		t.Fatalf("HTTP request: %d %+v %v; want the request forwarded as sent and the answer as given", status, a, h)
	}
	if a.Function != "fn" || a.RequestID == "" || a.Env != "hello" {
		t.Fatalf("the server saw %+v; want its name, a request id and its environment", a)
	}

	var mu sync.Mutex
	pids, ids, most := map[int]bool{}, map[string]bool{}, int32(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, a, _ := post("/hello/slow", `{"sleep_ms": 300}`)
			mu.Lock()
			defer mu.Unlock()
			if status != 200 {
				t.Errorf("parallel request: %d %s", status, a.Raw)
			}
			pids[a.PID], ids[a.RequestID] = true, true
			most = max(most, a.Concurrent)
		}()
	}
	wg.Wait()
	if len(pids) > 2 || most < 2 || most > 4 || len(ids) != 8 {
		t.Fatalf("8 parallel requests ran on %d instances, at most %d at once on one, with %d request ids; want ≤ 2 instances of 4 requests each and 8 ids", len(pids), most, len(ids))
	}

	out, err := e.Invoke(context.Background(), "fn", []byte(`{"sleep_ms": 1}`))
	if err != nil || !strings.Contains(string(out), `POST /invoke {\"sleep_ms\": 1}`) {
		t.Fatalf("event invocation: %s %v; want POST /invoke with the event", out, err)
	}

	// An overrun fails that request alone; the instance keeps serving the others.
	done := make(chan int, 1)
	go func() { s, _, _ := post("/hello/quick", `{"sleep_ms": 200}`); done <- s }()
	if status, a, _ := post("/hello/slow", `{"sleep_ms": 3000}`); status != http.StatusGatewayTimeout {
		t.Fatalf("overrun: %d %s, want 504", status, a.Raw)
	}
	if s := <-done; s != 200 {
		t.Fatalf("a request beside the overrun got %d", s)
	}
	if status, a, _ := post("/hello/fail", `{"fail": "boom"}`); status != 500 || !strings.Contains(a.Raw, "boom") {
		t.Fatalf("the server's own error: %d %s, want its 500 as it answered", status, a.Raw)
	}
	if status, a, _ := post("/hello/exit", `{"exit": true}`); status != http.StatusBadGateway || !strings.Contains(a.Raw, "InstanceExited") {
		t.Fatalf("crash: %d %s, want 502 InstanceExited", status, a.Raw)
	}
	if status, _, _ := post("/hello/again", `{}`); status != 200 {
		t.Fatalf("after a crash: %d, want a fresh instance to answer", status)
	}
}
