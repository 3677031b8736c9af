// Package fcevents holds the events Function Compute delivers to our functions, one file per source,
// with JSON fixtures in testdata/ proven the way aws-lambda-go proves its events (fcevtest): each
// fixture is decoded into its type, encoded again and compared as JSON, so a field the type drops or
// rewrites fails a test. The fixtures cover the timer event, RocketMQ batches (UNIQ_KEY, numeric system
// properties), HTTP events with repeated keys and with base64 bodies; local/fc proves the events the
// emulator sends against the same types.
//
// The SDK's own events package is used where it is faithful (HTTP trigger, timer). The RocketMQ event
// is ours: the SDK types systemProperties as map[string]string, but FC's EventBridge source sends
// numbers there (CONSUME_START_TIME), which fails decoding the whole batch; Properties keeps each value
// as its JSON and reads it as text.
package fcevents
