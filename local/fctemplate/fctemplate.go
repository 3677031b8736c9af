// Package fctemplate reads the Serverless Devs 3 deployment file (template.yml) into typed structs
// whose yaml tags are the fc3 and fc3-domain component schema names (devsapp/fc3 src/schema.json,
// devsapp/fc3-domain src/schema.json), and checks the rules this project deploys by.
//
// Decoding is strict at every level: an unknown or misspelled field is an error, not silently
// dropped as Serverless Devs would. A trigger's config must also decode into FC 3.0's own API type
// (github.com/alibabacloud-go/fc-20230330), because fc3's schema leaves those objects open and FC
// ignores what its model lacks (FC 2.0's runOptions.maximumTasks, deliveryOption.mode). Values are not interpolated while decoding, so numeric and
// boolean fields must be literals; string fields may hold ${vars.x} or ${env('X')}, which
// Interpolate resolves for callers that need the deployed values.
package fctemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	fcmodel "github.com/alibabacloud-go/fc-20230330/v4/client"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Edition is the only Serverless Devs spec version accepted.
const Edition = "3.0.0"

// Component names understood in resources. A version suffix (fc3@0.1.2) is accepted.
const (
	ComponentFC3    = "fc3"
	ComponentDomain = "fc3-domain"
)

// Trigger types, as the fc3 schema's ITriggerType enumerates them.
const (
	TriggerHTTP        = "http"
	TriggerTimer       = "timer"
	TriggerEventBridge = "eventbridge"
	TriggerOSS         = "oss"
	TriggerLog         = "log"
	TriggerMNSTopic    = "mns_topic"
	TriggerCDNEvents   = "cdn_events"
	TriggerTablestore  = "tablestore"
)

var triggerTypes = map[string]bool{
	TriggerHTTP: true, TriggerTimer: true, TriggerEventBridge: true, TriggerOSS: true,
	TriggerLog: true, TriggerMNSTopic: true, TriggerCDNEvents: true, TriggerTablestore: true,
}

var httpMethods = map[string]bool{
	"DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true, "PATCH": true, "POST": true, "PUT": true,
}

// Template is a whole deployment file.
type Template struct {
	Edition   string              `yaml:"edition"`
	Name      string              `yaml:"name"`
	Access    string              `yaml:"access"`
	Vars      map[string]any      `yaml:"vars,omitempty"`
	Resources map[string]Resource `yaml:"resources"`
	// Actions and Flow are Serverless Devs top-level hooks; kept raw, not interpreted.
	Actions yaml.Node `yaml:"actions,omitempty"`
	Flow    yaml.Node `yaml:"flow,omitempty"`
}

// Resource is one entry under resources. Props holds the raw props; Function is set for fc3
// resources and Domain for fc3-domain resources, both decoded strictly from Props.
type Resource struct {
	Component string    `yaml:"component"`
	Props     yaml.Node `yaml:"props"`
	Actions   yaml.Node `yaml:"actions,omitempty"`

	Function *Function `yaml:"-"`
	Domain   *Domain   `yaml:"-"`
}

// Function is the props of an fc3 resource. The typed fields are the ones this project sets or
// checks; the remaining schema properties are accepted as raw nodes so a valid fc3 file still decodes.
type Function struct {
	Region               string            `yaml:"region"`
	FunctionName         string            `yaml:"functionName"`
	Description          string            `yaml:"description,omitempty"`
	Runtime              string            `yaml:"runtime"`
	Handler              string            `yaml:"handler,omitempty"`
	Code                 string            `yaml:"code,omitempty"` // the string form of ICodeUri only
	MemorySize           int               `yaml:"memorySize,omitempty"`
	Timeout              int               `yaml:"timeout,omitempty"`
	InstanceConcurrency  int               `yaml:"instanceConcurrency,omitempty"`
	CPU                  float64           `yaml:"cpu,omitempty"`
	DiskSize             int               `yaml:"diskSize,omitempty"`
	EnvironmentVariables map[string]string `yaml:"environmentVariables,omitempty"`
	InternetAccess       *bool             `yaml:"internetAccess,omitempty"`
	Role                 string            `yaml:"role,omitempty"`
	Layers               []string          `yaml:"layers,omitempty"`
	Triggers             []Trigger         `yaml:"triggers,omitempty"`
	// CustomRuntimeConfig starts a custom runtime's HTTP server (runtime custom.debian10 and later).
	CustomRuntimeConfig *CustomRuntimeConfig `yaml:"customRuntimeConfig,omitempty"`

	// Accepted by the schema, not interpreted here.
	Annotations             yaml.Node `yaml:"annotations,omitempty"`
	AsyncInvokeConfig       yaml.Node `yaml:"asyncInvokeConfig,omitempty"`
	ConcurrencyConfig       yaml.Node `yaml:"concurrencyConfig,omitempty"`
	CustomContainerConfig   yaml.Node `yaml:"customContainerConfig,omitempty"`
	CustomDNS               yaml.Node `yaml:"customDNS,omitempty"`
	EnableLongLiving        yaml.Node `yaml:"enableLongLiving,omitempty"`
	Endpoint                yaml.Node `yaml:"endpoint,omitempty"`
	GPUConfig               yaml.Node `yaml:"gpuConfig,omitempty"`
	InstanceIsolationMode   yaml.Node `yaml:"instanceIsolationMode,omitempty"`
	InstanceLifecycleConfig yaml.Node `yaml:"instanceLifecycleConfig,omitempty"`
	LogConfig               yaml.Node `yaml:"logConfig,omitempty"`
	NASConfig               yaml.Node `yaml:"nasConfig,omitempty"`
	OSSMountConfig          yaml.Node `yaml:"ossMountConfig,omitempty"`
	ProvisionConfig         yaml.Node `yaml:"provisionConfig,omitempty"`
	ResourceGroupID         yaml.Node `yaml:"resourceGroupId,omitempty"`
	ScalingConfig           yaml.Node `yaml:"scalingConfig,omitempty"`
	SessionAffinity         yaml.Node `yaml:"sessionAffinity,omitempty"`
	SessionAffinityConfig   yaml.Node `yaml:"sessionAffinityConfig,omitempty"`
	Supplement              yaml.Node `yaml:"supplement,omitempty"`
	Tags                    yaml.Node `yaml:"tags,omitempty"`
	TracingConfig           yaml.Node `yaml:"tracingConfig,omitempty"`
	VPCBinding              yaml.Node `yaml:"vpcBinding,omitempty"`
	VPCConfig               yaml.Node `yaml:"vpcConfig,omitempty"`
}

// CustomRuntimeConfig is FC 3.0's model of it (fc-20230330 CustomRuntimeConfig): the command and
// arguments that start the function's HTTP server in /code, and the port it listens on.
type CustomRuntimeConfig struct {
	Command []string `yaml:"command"`
	Args    []string `yaml:"args,omitempty"`
	Port    int      `yaml:"port,omitempty"`
	// Accepted by the model, not interpreted here.
	HealthCheckConfig yaml.Node `yaml:"healthCheckConfig,omitempty"`
}

// IsCustomRuntime says whether the function runs as an HTTP server (a custom runtime) rather than
// under go1's runtime API.
func (f Function) IsCustomRuntime() bool { return strings.HasPrefix(f.Runtime, "custom") }

// Trigger is one element of an fc3 function's triggers. TriggerConfig stays raw because its shape
// depends on TriggerType; HTTP, Timer and EventBridge decode it strictly.
type Trigger struct {
	TriggerName    string    `yaml:"triggerName"`
	TriggerType    string    `yaml:"triggerType"`
	Description    string    `yaml:"description,omitempty"`
	Qualifier      string    `yaml:"qualifier,omitempty"`
	InvocationRole string    `yaml:"invocationRole,omitempty"`
	SourceArn      string    `yaml:"sourceArn,omitempty"`
	TriggerConfig  yaml.Node `yaml:"triggerConfig"`
}

// HTTPTriggerConfig is IHttpTriggerConfig.
type HTTPTriggerConfig struct {
	AuthType           string    `yaml:"authType"`
	Methods            []string  `yaml:"methods"`
	DisableURLInternet bool      `yaml:"disableURLInternet,omitempty"`
	AuthConfig         yaml.Node `yaml:"authConfig,omitempty"`
}

// TimerTriggerConfig is ITimerTriggerConfig.
type TimerTriggerConfig struct {
	CronExpression string `yaml:"cronExpression"`
	Enable         bool   `yaml:"enable"`
	Payload        string `yaml:"payload,omitempty"`
}

// EventBridgeTriggerConfig is IEventBridge, with the RocketMQ source and the event-streaming run
// options typed (the schema leaves those open; their names are FC's API names).
type EventBridgeTriggerConfig struct {
	TriggerEnable          bool              `yaml:"triggerEnable"`
	AsyncInvocationType    bool              `yaml:"asyncInvocationType"`
	EventRuleFilterPattern string            `yaml:"eventRuleFilterPattern"`
	EventSinkConfig        *EventSinkConfig  `yaml:"eventSinkConfig,omitempty"`
	EventSourceConfig      EventSourceConfig `yaml:"eventSourceConfig"`
	RunOptions             *RunOptions       `yaml:"runOptions,omitempty"`
}

// EventSinkConfig is how EventBridge delivers to the function.
type EventSinkConfig struct {
	DeliveryOption DeliveryOption `yaml:"deliveryOption"`
}

// DeliveryOption has what FC 3.0's model has: eventSchema (CloudEvents or RawData) and concurrency,
// the most invocations the trigger runs at once. FC 2.0's mode is not among them.
type DeliveryOption struct {
	EventSchema string `yaml:"eventSchema,omitempty"`
	Concurrency int    `yaml:"concurrency,omitempty"`
}

// EventSourceConfig names the source type and its parameters.
type EventSourceConfig struct {
	EventSourceType       string                `yaml:"eventSourceType"`
	EventSourceParameters EventSourceParameters `yaml:"eventSourceParameters,omitempty"`
}

// EventSourceParameters holds one source's parameters; only RocketMQ is typed.
type EventSourceParameters struct {
	SourceRocketMQParameters *SourceRocketMQParameters `yaml:"sourceRocketMQParameters,omitempty"`
	SourceMNSParameters      yaml.Node                 `yaml:"sourceMNSParameters,omitempty"`
	SourceRabbitMQParameters yaml.Node                 `yaml:"sourceRabbitMQParameters,omitempty"`
	SourceKafkaParameters    yaml.Node                 `yaml:"sourceKafkaParameters,omitempty"`
	SourceDTSParameters      yaml.Node                 `yaml:"sourceDTSParameters,omitempty"`
	SourceMQTTParameters     yaml.Node                 `yaml:"sourceMQTTParameters,omitempty"`
}

// SourceRocketMQParameters is FC's SourceRocketMQParameters (PascalCase keys, as the API spells them).
type SourceRocketMQParameters struct {
	RegionId                string `yaml:"RegionId,omitempty"`
	InstanceId              string `yaml:"InstanceId"`
	InstanceType            string `yaml:"InstanceType,omitempty"`
	Topic                   string `yaml:"Topic"`
	Tag                     string `yaml:"Tag,omitempty"`
	GroupID                 string `yaml:"GroupID"`
	Offset                  string `yaml:"Offset,omitempty"`
	Timestamp               int64  `yaml:"Timestamp,omitempty"`
	InstanceEndpoint        string `yaml:"InstanceEndpoint,omitempty"`
	InstanceNetwork         string `yaml:"InstanceNetwork,omitempty"`
	InstanceVpcId           string `yaml:"InstanceVpcId,omitempty"`
	InstanceVSwitchIds      string `yaml:"InstanceVSwitchIds,omitempty"`
	InstanceSecurityGroupId string `yaml:"InstanceSecurityGroupId,omitempty"`
	InstanceUsername        string `yaml:"InstanceUsername,omitempty"`
	InstancePassword        string `yaml:"InstancePassword,omitempty"`
	AuthType                string `yaml:"AuthType,omitempty"`
	FilterType              string `yaml:"FilterType,omitempty"`
	FilterSql               string `yaml:"FilterSql,omitempty"`
}

// RunOptions is the event-streaming run configuration, as FC 3.0's model has it (FC 2.0's
// maximumTasks is not there: concurrency is DeliveryOption's).
type RunOptions struct {
	Mode            string           `yaml:"mode,omitempty"`
	ErrorsTolerance string           `yaml:"errorsTolerance,omitempty"`
	RetryStrategy   *RetryStrategy   `yaml:"retryStrategy,omitempty"`
	DeadLetterQueue *DeadLetterQueue `yaml:"deadLetterQueue,omitempty"`
	BatchWindow     *BatchWindow     `yaml:"batchWindow,omitempty"`
}

// RetryStrategy: PushRetryStrategy is BACKOFF_RETRY or EXPONENTIAL_DECAY_RETRY; FC 3.0's model has
// nothing else, so the number of retries follows from the strategy.
type RetryStrategy struct {
	PushRetryStrategy string `yaml:"PushRetryStrategy"`
}

// DeadLetterQueue receives events that exhausted their retries.
type DeadLetterQueue struct {
	Arn string `yaml:"Arn"`
}

// BatchWindow: CountBasedWindow 1–10000 events, TimeBasedWindow 0–15 seconds.
type BatchWindow struct {
	CountBasedWindow int `yaml:"CountBasedWindow"`
	TimeBasedWindow  int `yaml:"TimeBasedWindow"`
}

// Domain is the props of an fc3-domain resource.
type Domain struct {
	Region      string      `yaml:"region"`
	DomainName  string      `yaml:"domainName"`
	Protocol    string      `yaml:"protocol"`
	RouteConfig RouteConfig `yaml:"routeConfig"`
	CertConfig  yaml.Node   `yaml:"certConfig,omitempty"`
	WafConfig   yaml.Node   `yaml:"wafConfig,omitempty"`
	TLSConfig   yaml.Node   `yaml:"tlsConfig,omitempty"`
	AuthConfig  yaml.Node   `yaml:"authConfig,omitempty"`
}

// RouteConfig is the domain's route table.
type RouteConfig struct {
	Routes []Route `yaml:"routes"`
}

// Route maps a path (and optionally methods) to a function.
type Route struct {
	Path          string    `yaml:"path"`
	Methods       []string  `yaml:"methods,omitempty"`
	FunctionName  string    `yaml:"functionName"`
	Qualifier     string    `yaml:"qualifier,omitempty"`
	RewriteConfig yaml.Node `yaml:"rewriteConfig,omitempty"`
}

// Load reads and parses a template file.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse decodes a template strictly, decodes each resource's props into its typed form, and validates.
func Parse(data []byte) (*Template, error) {
	var t Template
	if err := decodeStrict(data, &t); err != nil {
		return nil, err
	}
	var errs []error
	for _, key := range sortedKeys(t.Resources) {
		r := t.Resources[key]
		if r.Props.Kind == 0 {
			errs = append(errs, fmt.Errorf("resource %q: props is missing", key))
			continue
		}
		switch componentBase(r.Component) {
		case ComponentFC3:
			var f Function
			if err := nodeDecodeStrict(&r.Props, &f); err != nil {
				errs = append(errs, fmt.Errorf("resource %q: props (line %d): %w", key, r.Props.Line, err))
				continue
			}
			r.Function = &f
		case ComponentDomain:
			var d Domain
			if err := nodeDecodeStrict(&r.Props, &d); err != nil {
				errs = append(errs, fmt.Errorf("resource %q: props (line %d): %w", key, r.Props.Line, err))
				continue
			}
			r.Domain = &d
		default:
			errs = append(errs, fmt.Errorf("resource %q: component %q is not %s or %s", key, r.Component, ComponentFC3, ComponentDomain))
			continue
		}
		t.Resources[key] = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Functions returns the fc3 functions sorted by functionName.
func (t *Template) Functions() []Function {
	var out []Function
	for _, r := range t.Resources {
		if r.Function != nil {
			out = append(out, *r.Function)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FunctionName < out[j].FunctionName })
	return out
}

// Function returns the fc3 function with the given functionName.
func (t *Template) Function(name string) (Function, bool) {
	for _, r := range t.Resources {
		if r.Function != nil && r.Function.FunctionName == name {
			return *r.Function, true
		}
	}
	return Function{}, false
}

// Routes returns the routes of every fc3-domain resource, resources in key order, routes in file order.
func (t *Template) Routes() []Route {
	var out []Route
	for _, key := range sortedKeys(t.Resources) {
		if d := t.Resources[key].Domain; d != nil {
			out = append(out, d.RouteConfig.Routes...)
		}
	}
	return out
}

// Trigger returns the function's trigger with the given name.
func (f Function) Trigger(name string) (Trigger, bool) {
	for _, tr := range f.Triggers {
		if tr.TriggerName == name {
			return tr, true
		}
	}
	return Trigger{}, false
}

// Environment returns the function's environmentVariables with ${vars.x} and ${env('X')} resolved.
func (f Function) Environment(vars map[string]any, env func(string) string) map[string]string {
	out := make(map[string]string, len(f.EnvironmentVariables))
	for k, v := range f.EnvironmentVariables {
		out[k] = Interpolate(v, vars, env)
	}
	return out
}

// HTTP decodes the trigger's config as an http trigger.
func (t Trigger) HTTP() (HTTPTriggerConfig, error) {
	var c HTTPTriggerConfig
	if err := t.decodeConfig(TriggerHTTP, &fcmodel.HTTPTriggerConfig{}, &c, "authType", "methods"); err != nil {
		return c, err
	}
	return c, nil
}

// Timer decodes the trigger's config as a timer trigger.
func (t Trigger) Timer() (TimerTriggerConfig, error) {
	var c TimerTriggerConfig
	if err := t.decodeConfig(TriggerTimer, &fcmodel.TimerTriggerConfig{}, &c, "cronExpression", "enable"); err != nil {
		return c, err
	}
	return c, nil
}

// EventBridge decodes the trigger's config as an eventbridge trigger.
func (t Trigger) EventBridge() (EventBridgeTriggerConfig, error) {
	var c EventBridgeTriggerConfig
	if err := t.decodeConfig(TriggerEventBridge, &fcmodel.EventBridgeTriggerConfig{}, &c,
		"triggerEnable", "asyncInvocationType", "eventRuleFilterPattern", "eventSourceConfig"); err != nil {
		return c, err
	}
	return c, nil
}

// decodeConfig decodes the trigger's config twice: first into model, FC 3.0's own API type from the
// official SDK (github.com/alibabacloud-go/fc-20230330), refusing any key that type lacks, since FC
// ignores such a key however a deploy takes it; then into out, this package's plain view of it.
func (t Trigger) decodeConfig(want string, model, out any, required ...string) error {
	if t.TriggerType != want {
		return fmt.Errorf("trigger %q is of type %q, not %q", t.TriggerName, t.TriggerType, want)
	}
	if t.TriggerConfig.Kind != yaml.MappingNode {
		return fmt.Errorf("trigger %q: triggerConfig must be a mapping", t.TriggerName)
	}
	// Decode first, so a misspelled key is reported as unknown rather than as a missing required one.
	if err := modelDecodeStrict(&t.TriggerConfig, model); err != nil {
		return fmt.Errorf("trigger %q: triggerConfig (line %d) is not FC 3.0's %T: %w", t.TriggerName, t.TriggerConfig.Line, model, err)
	}
	if err := nodeDecodeStrict(&t.TriggerConfig, out); err != nil {
		return fmt.Errorf("trigger %q: triggerConfig (line %d): %w", t.TriggerName, t.TriggerConfig.Line, err)
	}
	for _, k := range required {
		if !hasKey(&t.TriggerConfig, k) {
			return fmt.Errorf("trigger %q: triggerConfig.%s is required", t.TriggerName, k)
		}
	}
	return nil
}

// cronParser reads six fields starting with seconds, an optional CRON_TZ=<zone> prefix, and @every;
// checkCron first narrows that to what FC's timer trigger accepts.
var cronParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule parses CronExpression, refusing what FC refuses (see checkCron), so the local emulator
// fires a trigger exactly when FC would.
func (c TimerTriggerConfig) Schedule() (cron.Schedule, error) {
	if err := checkCron(c.CronExpression); err != nil {
		return nil, fmt.Errorf("cronExpression %w", err)
	}
	s, err := cronParser.Parse(strings.TrimSpace(c.CronExpression))
	if err != nil {
		return nil, fmt.Errorf("cronExpression %q: %w", c.CronExpression, err)
	}
	return s, nil
}

// RocketMQ returns the RocketMQ source parameters when the source type is RocketMQ.
func (c EventBridgeTriggerConfig) RocketMQ() (*SourceRocketMQParameters, bool) {
	if !strings.EqualFold(c.EventSourceConfig.EventSourceType, "RocketMQ") {
		return nil, false
	}
	return c.EventSourceConfig.EventSourceParameters.SourceRocketMQParameters, true
}

// decodeStrict decodes one YAML document, refusing fields the target does not declare.
func decodeStrict(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return err
	}
	return nil
}

// nodeDecodeStrict is Node.Decode with KnownFields: yaml.v3 offers no strict Node.Decode, so the
// node is re-encoded and decoded again. Line numbers in its errors are relative to the node.
func nodeDecodeStrict(n *yaml.Node, out any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return decodeStrict(data, out)
}

// modelDecodeStrict decodes a YAML node into one of the SDK's API types, which carry JSON tags only:
// the node goes to JSON and through a decoder that refuses unknown fields at every level.
func modelDecodeStrict(n *yaml.Node, model any) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(model)
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

func componentBase(c string) string {
	base, _, _ := strings.Cut(strings.TrimSpace(c), "@")
	return base
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
