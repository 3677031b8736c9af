// Command noop is an FC go1 function that does nothing: local/bench/table times its cold start (process
// start → first invocation answered) and its binary size as the reference for the real functions.
// It is built like them (make build's flags) but lives here, not under functions/, and is never deployed.
package main

import (
	"context"
	"encoding/json"

	"github.com/aliyun/fc-runtime-go-sdk/fc"
)

func main() {
	fc.Start(func(context.Context, json.RawMessage) (any, error) { return nil, nil })
}
