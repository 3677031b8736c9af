// Package fcevents holds the events Function Compute delivers to our functions, one file per source,
// with JSON fixtures in testdata/ checked by round-trip tests (the aws-lambda-go events layout).
//
// The SDK's own events package is used where it is faithful (HTTP trigger, timer). The RocketMQ event
// is ours: the SDK types systemProperties as map[string]string, but FC's EventBridge source sends
// numbers there (CONSUME_START_TIME), which fails decoding the whole batch.
package fcevents
