package conformance

import (
	"context"
	"fmt"
	"io"
)

// Runner runs the scenarios with one client library.
type Runner interface {
	Run(ctx context.Context, t Target, scenarios []string) []Result
}

// NewRunner returns the runner for a client: go, java, node or python (run from the module at moduleDir).
func NewRunner(client, moduleDir string, progress io.Writer) (Runner, error) {
	switch client {
	case "go":
		return GoClient{Progress: progress}, nil
	case "node":
		return NewNodeClient(moduleDir)
	case "python":
		return NewPythonClient(moduleDir)
	case "java":
		return NewJavaClient(moduleDir)
	}
	return nil, fmt.Errorf("unknown client %q (go, java, node, python)", client)
}
