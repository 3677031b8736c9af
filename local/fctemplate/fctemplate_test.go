package fctemplate

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRepositoryTemplate(t *testing.T) {
	tpl, err := Load(filepath.Join("..", "..", "template.yml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if tpl.Edition != "3.0.0" || tpl.Name != "benefit-issuance" || tpl.Access != "default" {
		t.Errorf("header = %q %q %q", tpl.Edition, tpl.Name, tpl.Access)
	}
	if got := Interpolate("${vars.region}", tpl.Vars, nil); got != "cn-hangzhou" {
		t.Errorf("vars.region = %q", got)
	}

	var names []string
	for _, f := range tpl.Functions() {
		names = append(names, f.FunctionName)
		// The claim function serves the 10:00 rush as a custom runtime taking many requests per
		// instance; the others are go1, one invocation per instance.
		wantRuntime, concurrent := "go1", f.InstanceConcurrency == 1
		if f.FunctionName == "claim" {
			wantRuntime, concurrent = "custom.debian10", f.InstanceConcurrency > 1 && f.CustomRuntimeConfig != nil && f.CustomRuntimeConfig.Command[0] == "/code/main"
		}
		if f.Runtime != wantRuntime || f.Handler != "main" || f.Code != "./dist/"+f.FunctionName || !concurrent {
			t.Errorf("%s: runtime=%q handler=%q code=%q instanceConcurrency=%d", f.FunctionName, f.Runtime, f.Handler, f.Code, f.InstanceConcurrency)
		}
		for _, k := range []string{"MYSQL_DSN", "REDIS_ADDR", "ROCKETMQ_ENDPOINT", "JWT_SECRET"} {
			if f.EnvironmentVariables[k] == "" {
				t.Errorf("%s: environmentVariables.%s is not set", f.FunctionName, k)
			}
		}
		want := map[string]string{"TOPIC_RULE_CHANGES": "benefit-rule-changes", "TOPIC_GRANTS": "benefit-grants", "LOG_LEVEL": "info"}
		env := f.Environment(tpl.Vars, func(string) string { return "" })
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s = %q, want %q", f.FunctionName, k, env[k], v)
			}
		}
		_, hasLimit := f.EnvironmentVariables["CLAIM_RATE_LIMIT"]
		if hasLimit != (f.FunctionName == "claim") {
			t.Errorf("%s: CLAIM_RATE_LIMIT present = %v", f.FunctionName, hasLimit)
		}
	}
	if want := []string{"cachesync", "claim", "ledger", "rules", "timer"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("functions = %v, want %v", names, want)
	}
	if claim, _ := tpl.Function("claim"); claim.EnvironmentVariables["CLAIM_RATE_LIMIT"] != "20" {
		t.Errorf("claim CLAIM_RATE_LIMIT = %q", claim.EnvironmentVariables["CLAIM_RATE_LIMIT"])
	}

	httpCases := []struct {
		fn      string
		methods []string
	}{
		{"rules", []string{"GET", "POST", "PUT", "PATCH"}},
		{"claim", []string{"GET", "POST"}},
	}
	for _, tc := range httpCases {
		f, _ := tpl.Function(tc.fn)
		if len(f.Triggers) != 1 {
			t.Fatalf("%s: %d triggers", tc.fn, len(f.Triggers))
		}
		tr, ok := f.Trigger("http")
		if !ok {
			t.Fatalf("%s: no trigger named http", tc.fn)
		}
		c, err := tr.HTTP()
		if err != nil {
			t.Fatalf("%s: %v", tc.fn, err)
		}
		if c.AuthType != "anonymous" || !reflect.DeepEqual(c.Methods, tc.methods) {
			t.Errorf("%s: authType=%q methods=%v", tc.fn, c.AuthType, c.Methods)
		}
	}

	ebCases := []struct {
		fn, trigger, topic, group, dlqVar string
		count, seconds                    int
	}{
		{"cachesync", "rule-changes", "benefit-rule-changes", "GID_benefit_cachesync", "${vars.ruleChangesDlqArn}", 1, 0},
		{"ledger", "grants", "benefit-grants", "GID_benefit_ledger", "${vars.grantsDlqArn}", 100, 1},
		{"timer", "grant-starts", "benefit-grant-starts", "GID_benefit_grant_starts", "${vars.grantStartsDlqArn}", 1, 0},
	}
	for _, tc := range ebCases {
		f, _ := tpl.Function(tc.fn)
		if tc.fn != "timer" && len(f.Triggers) != 1 {
			t.Fatalf("%s: %d triggers", tc.fn, len(f.Triggers))
		}
		tr, ok := f.Trigger(tc.trigger)
		if !ok {
			t.Fatalf("%s: no trigger %q", tc.fn, tc.trigger)
		}
		c, err := tr.EventBridge()
		if err != nil {
			t.Fatalf("%s: %v", tc.fn, err)
		}
		p, isRocketMQ := c.RocketMQ()
		if !isRocketMQ || p == nil {
			t.Fatalf("%s: source is not RocketMQ", tc.fn)
		}
		if p.InstanceType != "Cloud_5" || p.Topic != tc.topic || p.GroupID != tc.group {
			t.Errorf("%s: source = %+v", tc.fn, *p)
		}
		ro := c.RunOptions
		if ro == nil || ro.RetryStrategy == nil || ro.DeadLetterQueue == nil || ro.BatchWindow == nil {
			t.Fatalf("%s: runOptions incomplete: %+v", tc.fn, ro)
		}
		if ro.Mode != "event-streaming" || ro.ErrorsTolerance != "ALL" || ro.RetryStrategy.PushRetryStrategy != RetryExponentialDecay {
			t.Errorf("%s: mode=%q errorsTolerance=%q retry=%q", tc.fn, ro.Mode, ro.ErrorsTolerance, ro.RetryStrategy.PushRetryStrategy)
		}
		if ro.DeadLetterQueue.Arn != tc.dlqVar {
			t.Errorf("%s: deadLetterQueue.Arn = %q, want %q", tc.fn, ro.DeadLetterQueue.Arn, tc.dlqVar)
		}
		if ro.BatchWindow.CountBasedWindow != tc.count || ro.BatchWindow.TimeBasedWindow != tc.seconds {
			t.Errorf("%s: batchWindow = %+v", tc.fn, *ro.BatchWindow)
		}
		if c.EventSinkConfig == nil || c.EventSinkConfig.DeliveryOption.EventSchema != "CloudEvents" {
			t.Fatalf("%s: eventSinkConfig = %+v", tc.fn, c.EventSinkConfig)
		}
		// The consumer limit, expressed the one way FC 3.0 reads it.
		if want := map[string]int{"cachesync": 1, "ledger": 2, "timer": 1}[tc.fn]; c.EventSinkConfig.DeliveryOption.Concurrency != want {
			t.Errorf("%s: deliveryOption.concurrency = %d, want %d", tc.fn, c.EventSinkConfig.DeliveryOption.Concurrency, want)
		}
	}

	timer, _ := tpl.Function("timer")
	timerCases := []struct {
		name  string
		every time.Duration
	}{
		{"scheduled-grants", time.Minute},
		{"outbox-relay", time.Minute},
		{"grant-replay", time.Minute},
		{"grant-backstop", time.Minute},
		{"reconcile", time.Minute},
		{"cache-rebuild", time.Minute},
	}
	if len(timer.Triggers) != len(timerCases)+1 {
		t.Errorf("timer has %d triggers, want %d timers and grant-starts", len(timer.Triggers), len(timerCases))
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range timerCases {
		tr, ok := timer.Trigger(tc.name)
		if !ok {
			t.Errorf("timer: no trigger %q", tc.name)
			continue
		}
		c, err := tr.Timer()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !c.Enable || c.Payload != tc.name {
			t.Errorf("%s: enable=%v payload=%q", tc.name, c.Enable, c.Payload)
		}
		s, err := c.Schedule()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		first := s.Next(start)
		if gap := s.Next(first).Sub(first); gap != tc.every {
			t.Errorf("%s (%q): fires every %v, want %v", tc.name, c.CronExpression, gap, tc.every)
		}
	}

	type route struct{ path, fn string }
	var routes []route
	for _, r := range tpl.Routes() {
		routes = append(routes, route{r.Path, r.FunctionName})
	}
	wantRoutes := []route{
		{"/v1/campaigns", "rules"}, {"/v1/campaigns/*", "rules"}, {"/v1/users/*", "rules"}, {"/v1/openapi.yaml", "rules"},
		{"/v1/claims", "claim"}, {"/v1/claims/*", "claim"},
	}
	if !reflect.DeepEqual(routes, wantRoutes) {
		t.Errorf("routes = %v, want %v", routes, wantRoutes)
	}
}

// small is a valid template; each mutation below breaks exactly one thing.
const small = `edition: 3.0.0
name: small
access: default
vars:
  region: cn-hangzhou
resources:
  api:
    component: fc3
    props:
      region: ${vars.region}
      functionName: api
      runtime: go1
      handler: main
      code: ./dist/api
      memorySize: 256
      timeout: 10
      instanceConcurrency: 1
      triggers:
        - triggerName: http
          triggerType: http
          triggerConfig:
            authType: anonymous
            methods: [GET]
        - triggerName: tick
          triggerType: timer
          triggerConfig:
            cronExpression: 'CRON_TZ=Asia/Shanghai 0 0 10 * * *'
            enable: true
            payload: tick
        - triggerName: events
          triggerType: eventbridge
          triggerConfig:
            triggerEnable: true
            asyncInvocationType: false
            eventRuleFilterPattern: '{}'
            eventSinkConfig:
              deliveryOption:
                eventSchema: CloudEvents
                concurrency: 2
            runOptions:
              mode: event-streaming
              errorsTolerance: ALL
              retryStrategy:
                PushRetryStrategy: BACKOFF_RETRY
              deadLetterQueue:
                Arn: acs:mns:cn-hangzhou:1:/queues/dlq
              batchWindow:
                CountBasedWindow: 10
                TimeBasedWindow: 2
            eventSourceConfig:
              eventSourceType: RocketMQ
              eventSourceParameters:
                sourceRocketMQParameters:
                  InstanceId: rmq-1
                  InstanceType: Cloud_5
                  Topic: t
                  GroupID: GID_t
  domain:
    component: fc3-domain
    props:
      region: cn-hangzhou
      domainName: auto
      protocol: HTTP
      routeConfig:
        routes:
          - path: /v1/*
            functionName: api
`

func TestSmallTemplateIsValid(t *testing.T) {
	tpl, err := Parse([]byte(small))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	f, ok := tpl.Function("api")
	if !ok || len(f.Triggers) != 3 {
		t.Fatalf("function api = %+v, %v", f, ok)
	}
	tick, _ := f.Trigger("tick")
	c, err := tick.Timer()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	// 10:00 Shanghai is 02:00 UTC.
	if next := s.Next(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)).UTC(); next != time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC) {
		t.Errorf("next = %v", next)
	}
	if _, err := tick.HTTP(); err == nil {
		t.Error("HTTP() on a timer trigger succeeded")
	}
}

func TestMutationsFail(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           []string // every one must appear in the error
	}{
		{"misspelled prop", "memorySize: 256", "memorysize: 256", []string{`"api"`, "memorysize"}},
		{"misspelled top-level field", "access: default", "acess: default", []string{"acess"}},
		{"misspelled resource field", "component: fc3-domain", "componnt: fc3-domain", []string{"componnt"}},
		{"misspelled http config field", "authType: anonymous", "authtype: anonymous", []string{`"http"`, "authtype"}},
		{"misspelled timer config field", "enable: true", "enabled: true", []string{`"tick"`, "enabled"}},
		{"misspelled eventbridge field", "PushRetryStrategy: BACKOFF_RETRY", "PushRetryStratgy: BACKOFF_RETRY", []string{`"events"`, "PushRetryStratgy"}},
		{"misspelled rocketmq parameter", "GroupID: GID_t", "GroupId: GID_t", []string{"GroupId"}},
		{"misspelled route field", "/v1/*\n            functionName: api", "/v1/*\n            function: api", []string{`"domain"`, "function"}},
		{"no retry strategy",
			"              retryStrategy:\n                PushRetryStrategy: BACKOFF_RETRY\n", "",
			[]string{`"api"`, `"events"`, "retryStrategy.PushRetryStrategy"}},
		{"unknown retry strategy", "PushRetryStrategy: BACKOFF_RETRY", "PushRetryStrategy: NONE", []string{"PushRetryStrategy", `"NONE"`}},
		{"no dead-letter queue",
			"              deadLetterQueue:\n                Arn: acs:mns:cn-hangzhou:1:/queues/dlq\n", "",
			[]string{`"events"`, "deadLetterQueue.Arn"}},
		{"empty dead-letter arn", "Arn: acs:mns:cn-hangzhou:1:/queues/dlq", "Arn: ''", []string{"deadLetterQueue.Arn"}},
		{"runtime not go1", "runtime: go1", "runtime: python3", []string{`"api"`, "runtime", "python3"}},
		{"handler not main", "handler: main", "handler: index.handler", []string{"handler"}},
		{"no code", "      code: ./dist/api\n", "", []string{"code"}},
		{"zero timeout", "timeout: 10", "timeout: 0", []string{"timeout"}},
		{"no memory", "      memorySize: 256\n", "", []string{"memorySize"}},
		{"instance concurrency above 1", "instanceConcurrency: 1", "instanceConcurrency: 4", []string{"instanceConcurrency"}},
		{"custom runtime without its config", "runtime: go1", "runtime: custom.debian10", []string{"customRuntimeConfig.command"}},
		{"custom runtime config on go1", "      instanceConcurrency: 1\n", "      instanceConcurrency: 1\n      customRuntimeConfig:\n        command: [/code/main]\n", []string{"customRuntimeConfig", "go1"}},
		{"custom runtime binary outside /code", "runtime: go1\n      handler: main\n",
			"runtime: custom.debian10\n      handler: main\n      customRuntimeConfig:\n        command: [./main]\n", []string{"/code", "./main"}},
		{"custom runtime concurrency above 200", "runtime: go1\n      handler: main\n      code: ./dist/api\n      memorySize: 256\n      timeout: 10\n      instanceConcurrency: 1\n",
			"runtime: custom.debian10\n      handler: main\n      code: ./dist/api\n      memorySize: 256\n      timeout: 10\n      instanceConcurrency: 201\n      customRuntimeConfig:\n        command: [/code/main]\n", []string{"instanceConcurrency", "201"}},
		{"misspelled custom runtime field", "      instanceConcurrency: 1\n", "      instanceConcurrency: 1\n      customRuntimeConfig:\n        comand: [/code/main]\n", []string{"comand"}},
		{"duplicate trigger name", "triggerName: tick", "triggerName: http", []string{"triggerName", `"http"`, "duplicated"}},
		{"unknown trigger type", "triggerType: http", "triggerType: websocket", []string{"triggerType", "websocket"}},
		{"bad cron", "0 0 10 * * *", "0 10 * * *", []string{`"tick"`, "cronExpression"}},
		{"bad every", "CRON_TZ=Asia/Shanghai 0 0 10 * * *", "@every ten", []string{"cronExpression", "@every ten"}},
		{"timer without enable", "            enable: true\n", "", []string{"enable"}},
		{"route to unknown function", "/v1/*\n            functionName: api", "/v1/*\n            functionName: apx", []string{`"domain"`, "functionName", `"apx"`}},
		{"batch count 0", "CountBasedWindow: 10", "CountBasedWindow: 0", []string{"CountBasedWindow"}},
		{"batch count too big", "CountBasedWindow: 10", "CountBasedWindow: 10001", []string{"CountBasedWindow", "10001"}},
		{"batch time too long", "TimeBasedWindow: 2", "TimeBasedWindow: 16", []string{"TimeBasedWindow", "16"}},
		{"wrong edition", "edition: 3.0.0", "edition: 2.0.0", []string{"edition"}},
		{"unknown component", "component: fc3-domain", "component: fc-domain", []string{`"domain"`, "fc-domain"}},
		{"scalar where list", "methods: [GET]", "methods: GET", []string{`"http"`, "triggerConfig", "methods", "[]*string"}},
		{"http method not allowed", "methods: [GET]", "methods: [FETCH]", []string{"methods", "FETCH"}},
		// FC 2.0 keys a deploy takes and FC 3.0 ignores: refused against the official model.
		{"FC 2.0 runOptions.maximumTasks", "              mode: event-streaming\n", "              mode: event-streaming\n              maximumTasks: 2\n",
			[]string{`"events"`, "maximumTasks", "EventBridgeTriggerConfig"}},
		{"FC 2.0 deliveryOption.mode", "                concurrency: 2\n", "                concurrency: 2\n                mode: event-streaming\n",
			[]string{`"events"`, `"mode"`, "EventBridgeTriggerConfig"}},
		{"retry attempts FC 3.0 does not read", "PushRetryStrategy: BACKOFF_RETRY", "PushRetryStrategy: BACKOFF_RETRY\n                MaximumRetryAttempts: 3",
			[]string{"MaximumRetryAttempts"}},
		{"key unknown to the timer model", "            payload: tick\n", "            payload: tick\n            timeZone: UTC\n", []string{`"tick"`, "timeZone", "TimerTriggerConfig"}},
		{"negative concurrency", "concurrency: 2", "concurrency: -1", []string{"deliveryOption.concurrency"}},
		{"concurrency as text", "concurrency: 2", "concurrency: two", []string{`"events"`, "concurrency"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(small, tc.old) != 1 {
				t.Fatalf("mutation target %q occurs %d times in the base template", tc.old, strings.Count(small, tc.old))
			}
			_, err := Parse([]byte(strings.Replace(small, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatal("Parse accepted the mutated template")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
}

func TestInterpolate(t *testing.T) {
	vars := map[string]any{
		"region":  "cn-hangzhou",
		"size":    512,
		"nested":  map[string]any{"topic": "benefit-grants"},
		"fromEnv": "${env('DLQ')}",
		"loop":    "${vars.loop}",
	}
	env := func(k string) string {
		return map[string]string{"JWT_SECRET": "s3cret", "DLQ": "acs:mns:x"}[k]
	}
	cases := []struct {
		name, in, want string
		env            func(string) string
	}{
		{"var", "${vars.region}", "cn-hangzhou", env},
		{"var in text", "fc.${vars.region}.aliyuncs.com", "fc.cn-hangzhou.aliyuncs.com", env},
		{"non-string var", "${vars.size}", "512", env},
		{"nested var", "${vars.nested.topic}", "benefit-grants", env},
		{"var holding env", "${vars.fromEnv}", "acs:mns:x", env},
		{"unknown var", "${vars.nope}", "${vars.nope}", env},
		{"map var is not a value", "${vars.nested}", "${vars.nested}", env},
		{"self-referencing var ends", "${vars.loop}", "${vars.loop}", env},
		{"env single quotes", "${env('JWT_SECRET')}", "s3cret", env},
		{"env double quotes", `${env("JWT_SECRET")}`, "s3cret", env},
		{"env bare", "${env(JWT_SECRET)}", "s3cret", env},
		{"env spaces", "${ env( 'JWT_SECRET' ) }", "s3cret", env},
		{"env unset", "${env('MISSING')}", "${env('MISSING')}", env},
		{"env default", "${env('MISSING', 'fallback')}", "fallback", env},
		{"env set beats default", "${env('JWT_SECRET', 'fallback')}", "s3cret", env},
		{"nil env", "${env('JWT_SECRET')}", "${env('JWT_SECRET')}", nil},
		{"other function", "${path('../')}", "${path('../')}", env},
		{"several", "${vars.region}/${env(JWT_SECRET)}/${vars.x}", "cn-hangzhou/s3cret/${vars.x}", env},
		{"plain", "no placeholders", "no placeholders", env},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Interpolate(tc.in, vars, tc.env); got != tc.want {
				t.Errorf("Interpolate(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
