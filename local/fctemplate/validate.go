package fctemplate

import (
	"errors"
	"fmt"
	"strings"
)

// Retry strategies EventBridge accepts for push delivery.
const (
	RetryBackoff          = "BACKOFF_RETRY"
	RetryExponentialDecay = "EXPONENTIAL_DECAY_RETRY"
)

// Validate checks the rules this project deploys by. Each error names the resource and the field.
// Parse calls it; call it again after changing a Template in code.
func (t *Template) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if t.Edition != Edition {
		add("edition must be %q, got %q", Edition, t.Edition)
	}
	if strings.TrimSpace(t.Name) == "" {
		add("name is required")
	}
	if len(t.Resources) == 0 {
		add("resources is empty")
	}

	functions := map[string]string{} // functionName -> resource key
	for _, key := range sortedKeys(t.Resources) {
		r := t.Resources[key]
		if r.Function == nil {
			continue
		}
		for _, err := range validateFunction(*r.Function) {
			errs = append(errs, fmt.Errorf("resource %q: %w", key, err))
		}
		name := r.Function.FunctionName
		if prev, dup := functions[name]; dup && name != "" {
			add("resource %q: props.functionName %q is also declared by resource %q", key, name, prev)
		}
		functions[name] = key
	}

	for _, key := range sortedKeys(t.Resources) {
		d := t.Resources[key].Domain
		if d == nil {
			continue
		}
		if d.Region == "" {
			add("resource %q: props.region is required", key)
		}
		if d.DomainName == "" {
			add("resource %q: props.domainName is required", key)
		}
		switch d.Protocol {
		case "HTTP", "HTTPS", "HTTP,HTTPS":
		default:
			add("resource %q: props.protocol must be HTTP, HTTPS or HTTP,HTTPS, got %q", key, d.Protocol)
		}
		if len(d.RouteConfig.Routes) == 0 {
			add("resource %q: props.routeConfig.routes is empty", key)
		}
		paths := map[string]bool{}
		for i, rt := range d.RouteConfig.Routes {
			field := fmt.Sprintf("props.routeConfig.routes[%d]", i)
			if !strings.HasPrefix(rt.Path, "/") {
				add("resource %q: %s.path must start with /, got %q", key, field, rt.Path)
			}
			if paths[rt.Path] {
				add("resource %q: %s.path %q is routed twice", key, field, rt.Path)
			}
			paths[rt.Path] = true
			if _, ok := functions[rt.FunctionName]; !ok {
				add("resource %q: %s.functionName %q is not a function declared in this template", key, field, rt.FunctionName)
			}
			for _, m := range rt.Methods {
				if !httpMethods[m] {
					add("resource %q: %s.methods: %q is not an HTTP method FC routes", key, field, m)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func validateFunction(f Function) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if f.Region == "" {
		add("props.region is required")
	}
	if f.FunctionName == "" {
		add("props.functionName is required")
	}
	custom := false
	switch f.Runtime {
	case "go1":
		if f.Handler != "main" {
			add("props.handler must be main (the binary go1 runs), got %q", f.Handler)
		}
		if f.CustomRuntimeConfig != nil {
			add("props.customRuntimeConfig is for custom runtimes, not go1")
		}
	case "custom.debian10", "custom.debian11", "custom.debian12":
		custom = true
		switch c := f.CustomRuntimeConfig; {
		case c == nil || len(c.Command) == 0:
			add("props.customRuntimeConfig.command is required for runtime %s", f.Runtime)
		case !strings.HasPrefix(c.Command[0], "/code/"):
			add("props.customRuntimeConfig.command must start the binary from /code (where FC unpacks the code), got %q", c.Command[0])
		}
		if c := f.CustomRuntimeConfig; c != nil && c.Port != 0 && (c.Port < 1 || c.Port > 65535) {
			add("props.customRuntimeConfig.port must be a TCP port, got %d", c.Port)
		}
	default:
		add("props.runtime must be go1 or custom.debian10/11/12 (a Go binary serving HTTP), got %q", f.Runtime)
	}
	if f.Code == "" {
		add("props.code is required")
	}
	if f.Timeout <= 0 || f.Timeout > 86400 {
		add("props.timeout must be in 1..86400 seconds, got %d", f.Timeout)
	}
	if f.MemorySize <= 0 {
		add("props.memorySize must be > 0, got %d", f.MemorySize)
	} else if f.MemorySize < 128 || f.MemorySize > 32768 || f.MemorySize%64 != 0 {
		add("props.memorySize must be a multiple of 64 in 128..32768 MB, got %d", f.MemorySize)
	}
	// go1 runs one invocation per instance; any other value is refused by FC or silently ignored. A
	// custom runtime takes up to instanceConcurrency requests at once (1..200).
	if !custom && f.InstanceConcurrency != 0 && f.InstanceConcurrency != 1 {
		add("props.instanceConcurrency must be 1 for go1, got %d", f.InstanceConcurrency)
	}
	if custom && (f.InstanceConcurrency < 0 || f.InstanceConcurrency > 200) {
		add("props.instanceConcurrency must be in 1..200, got %d", f.InstanceConcurrency)
	}
	if f.CPU != 0 && (f.CPU < 0.05 || f.CPU > 16) {
		add("props.cpu must be in 0.05..16, got %g", f.CPU)
	}
	if f.DiskSize != 0 && f.DiskSize != 512 && f.DiskSize != 10240 {
		add("props.diskSize must be 512 or 10240, got %d", f.DiskSize)
	}

	seen := map[string]bool{}
	for i, tr := range f.Triggers {
		field := fmt.Sprintf("props.triggers[%d]", i)
		if tr.TriggerName == "" {
			add("%s.triggerName is required", field)
		} else if seen[tr.TriggerName] {
			add("%s.triggerName %q is duplicated in function %q", field, tr.TriggerName, f.FunctionName)
		}
		seen[tr.TriggerName] = true
		if !triggerTypes[tr.TriggerType] {
			add("%s.triggerType %q is not one of http, timer, eventbridge, oss, log, mns_topic, cdn_events, tablestore", field, tr.TriggerType)
			continue
		}
		if tr.TriggerConfig.Kind == 0 {
			add("%s.triggerConfig is required", field)
			continue
		}
		if err := validateTrigger(tr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	return errs
}

func validateTrigger(tr Trigger) error {
	switch tr.TriggerType {
	case TriggerHTTP:
		c, err := tr.HTTP()
		if err != nil {
			return err
		}
		switch c.AuthType {
		case "anonymous", "function", "jwt":
		default:
			return fmt.Errorf("trigger %q: triggerConfig.authType must be anonymous, function or jwt, got %q", tr.TriggerName, c.AuthType)
		}
		if len(c.Methods) == 0 {
			return fmt.Errorf("trigger %q: triggerConfig.methods is empty", tr.TriggerName)
		}
		for _, m := range c.Methods {
			if !httpMethods[m] {
				return fmt.Errorf("trigger %q: triggerConfig.methods: %q is not an HTTP method FC accepts", tr.TriggerName, m)
			}
		}
	case TriggerTimer:
		c, err := tr.Timer()
		if err != nil {
			return err
		}
		if _, err := c.Schedule(); err != nil {
			return fmt.Errorf("trigger %q: triggerConfig.%w", tr.TriggerName, err)
		}
	case TriggerEventBridge:
		c, err := tr.EventBridge()
		if err != nil {
			return err
		}
		return validateEventBridge(tr.TriggerName, c)
	}
	return nil
}

func validateEventBridge(name string, c EventBridgeTriggerConfig) error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("trigger %q: triggerConfig."+format, append([]any{name}, args...)...))
	}
	if c.EventSourceConfig.EventSourceType == "" {
		add("eventSourceConfig.eventSourceType is required")
	}
	if sink := c.EventSinkConfig; sink != nil && sink.DeliveryOption.Concurrency < 0 {
		add("eventSinkConfig.deliveryOption.concurrency must not be negative, got %d", sink.DeliveryOption.Concurrency)
	}
	if ro := c.RunOptions; ro != nil {
		switch ro.ErrorsTolerance {
		case "", "ALL", "NONE":
		default:
			add("runOptions.errorsTolerance must be ALL or NONE, got %q", ro.ErrorsTolerance)
		}
		if rs := ro.RetryStrategy; rs != nil {
			switch rs.PushRetryStrategy {
			case RetryBackoff, RetryExponentialDecay:
			default:
				add("runOptions.retryStrategy.PushRetryStrategy must be %s or %s, got %q", RetryBackoff, RetryExponentialDecay, rs.PushRetryStrategy)
			}
		}
		if bw := ro.BatchWindow; bw != nil {
			if bw.CountBasedWindow < 1 || bw.CountBasedWindow > 10000 {
				add("runOptions.batchWindow.CountBasedWindow must be in 1..10000, got %d", bw.CountBasedWindow)
			}
			if bw.TimeBasedWindow < 0 || bw.TimeBasedWindow > 15 {
				add("runOptions.batchWindow.TimeBasedWindow must be in 0..15 seconds, got %d", bw.TimeBasedWindow)
			}
		}
	}

	if p, isRocketMQ := c.RocketMQ(); isRocketMQ {
		if p == nil {
			add("eventSourceConfig.eventSourceParameters.sourceRocketMQParameters is required for a RocketMQ source")
		} else {
			if p.InstanceId == "" {
				add("eventSourceConfig.eventSourceParameters.sourceRocketMQParameters.InstanceId is required")
			}
			if p.Topic == "" {
				add("eventSourceConfig.eventSourceParameters.sourceRocketMQParameters.Topic is required")
			}
			if p.GroupID == "" {
				add("eventSourceConfig.eventSourceParameters.sourceRocketMQParameters.GroupID is required")
			}
		}
		// A RocketMQ consumer must say how it retries and where exhausted messages go: the defaults
		// end with the message discarded.
		ro := c.RunOptions
		if ro == nil {
			add("runOptions is required for a RocketMQ source (retryStrategy and deadLetterQueue)")
		} else {
			if ro.RetryStrategy == nil || ro.RetryStrategy.PushRetryStrategy == "" {
				add("runOptions.retryStrategy.PushRetryStrategy is required for a RocketMQ source (%s or %s)", RetryBackoff, RetryExponentialDecay)
			}
			if ro.DeadLetterQueue == nil || strings.TrimSpace(ro.DeadLetterQueue.Arn) == "" {
				add("runOptions.deadLetterQueue.Arn is required for a RocketMQ source; without it failed messages are discarded")
			}
		}
	}
	return errors.Join(errs...)
}
