package conformance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// NodeClient runs the scenarios with the official Node.js client (rocketmq-client-nodejs, pinned in
// node/package.json), installed with npm into node/node_modules, which git ignores.
type NodeClient struct{ dir string }

// NewNodeClient installs the client when missing.
func NewNodeClient(moduleDir string) (*NodeClient, error) {
	dir := filepath.Join(moduleDir, "local", "conformance", "node")
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("the Node.js client needs node: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "rocketmq-client-nodejs")); err != nil {
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("npm install: %v\n%s", err, out)
		}
	}
	return &NodeClient{dir: dir}, nil
}

// Run runs the scenarios in one node process and reads one RESULT line per scenario.
func (n *NodeClient) Run(ctx context.Context, t Target, names []string) []Result {
	if len(names) == 0 {
		for _, s := range Scenarios() {
			names = append(names, s.Name)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"conformance.mjs", t.Endpoint}, names...)...)
	cmd.Dir = n.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	seen := map[string]Result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 || f[0] != "RESULT" {
			continue
		}
		r := Result{Scenario: f[1], Client: "node", Broker: t.Name, Status: f[2]}
		if len(f) == 4 {
			r.Detail = f[3]
		}
		seen[f[1]] = r
	}
	var res []Result
	for _, name := range names {
		r, ok := seen[name]
		if !ok {
			r = Result{Scenario: name, Client: "node", Broker: t.Name, Status: "FAIL",
				Detail: fmt.Sprintf("no result from node (%v): %s", err, lastLines(stderr.String(), 5))}
		}
		r.Took = time.Since(start)
		res = append(res, r)
	}
	return res
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
