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

	"github.com/benefit-issuance/benefits/local/apache"
)

// ScriptClient runs the scenarios with an official client of another language: one process per
// broker, given the endpoint and the scenario names, printing one RESULT line per scenario.
type ScriptClient struct {
	name string   // column name: node, python
	dir  string   // where the script and its installed client live
	argv []string // the interpreter and the script
}

// NewNodeClient installs the Node.js client (rocketmq-client-nodejs, pinned in node/package.json)
// with npm into node/node_modules, which git ignores, when missing.
func NewNodeClient(moduleDir string) (*ScriptClient, error) {
	dir := filepath.Join(moduleDir, "local", "conformance", "node")
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("the Node.js client needs node: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "rocketmq-client-nodejs")); err != nil {
		if err := install(dir, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
			return nil, err
		}
	}
	return &ScriptClient{name: "node", dir: dir, argv: []string{"node", "conformance.mjs"}}, nil
}

// NewPythonClient installs the Python client (rocketmq-python-client, pinned in
// python/requirements.txt) with pip into a virtual environment python/.venv, which git ignores.
func NewPythonClient(moduleDir string) (*ScriptClient, error) {
	dir := filepath.Join(moduleDir, "local", "conformance", "python")
	py := filepath.Join(dir, ".venv", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		if err := install(dir, "python3", "-m", "venv", ".venv"); err != nil {
			return nil, fmt.Errorf("%w (Debian: apt-get install python3-venv)", err)
		}
		if err := install(dir, py, "-m", "pip", "install", "-q", "-r", "requirements.txt"); err != nil {
			os.RemoveAll(filepath.Join(dir, ".venv"))
			return nil, err
		}
	}
	return &ScriptClient{name: "python", dir: dir, argv: []string{py, "conformance.py"}}, nil
}

// NewJavaClient fetches the Java client (rocketmq-client-java, pinned in java/pom.xml) with Maven into
// java/.cache/lib and compiles java/Conformance.java into java/.cache/classes, which git ignores, when
// missing or when the pom or the source changed. One JVM runs all the scenarios for a broker.
func NewJavaClient(moduleDir string) (*ScriptClient, error) {
	dir := filepath.Join(moduleDir, "local", "conformance", "java")
	if err := apache.EnsureTools(context.Background(), os.Stderr); err != nil {
		return nil, err
	}
	for _, tool := range []string{"java", "javac", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the Java client needs %s (Debian: default-jdk-headless maven): %w", tool, err)
		}
	}
	cache := filepath.Join(dir, ".cache")
	var want []byte
	for _, f := range []string{"pom.xml", "Conformance.java"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		want = append(want, b...)
	}
	stamp := filepath.Join(cache, "built-from")
	if have, err := os.ReadFile(stamp); err != nil || !bytes.Equal(have, want) {
		if err := os.RemoveAll(cache); err != nil {
			return nil, err
		}
		if err := install(dir, "mvn", "-B", "-q", "-f", "pom.xml", "dependency:copy-dependencies", "-DoutputDirectory=.cache/lib"); err != nil {
			return nil, err
		}
		if err := install(dir, "javac", "-nowarn", "-cp", filepath.Join(".cache", "lib", "*"), "-d", filepath.Join(".cache", "classes"), "Conformance.java"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(stamp, want, 0o644); err != nil {
			return nil, err
		}
	}
	// The client logs under ${user.home}/logs/rocketmq; keep that inside the cache.
	return &ScriptClient{name: "java", dir: dir, argv: []string{"java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Duser.home=" + filepath.Join(cache, "home"), "-cp", filepath.Join(".cache", "classes") + string(os.PathListSeparator) + filepath.Join(".cache", "lib", "*"),
		"Conformance"}}, nil
}

func install(dir string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// Run runs the scenarios in one process and reads one RESULT line per scenario.
func (n *ScriptClient) Run(ctx context.Context, t Target, names []string) []Result {
	if len(names) == 0 {
		for _, s := range Scenarios() {
			names = append(names, s.Name)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	args := append(append(append([]string(nil), n.argv[1:]...), t.Endpoint), names...)
	cmd := exec.CommandContext(ctx, n.argv[0], args...)
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
		r := Result{Scenario: f[1], Client: n.name, Broker: t.Name, Status: f[2]}
		if len(f) == 4 {
			r.Detail = f[3]
		}
		seen[f[1]] = r
	}
	var res []Result
	for _, name := range names {
		r, ok := seen[name]
		if !ok {
			r = Result{Scenario: name, Client: n.name, Broker: t.Name, Status: "FAIL",
				Detail: fmt.Sprintf("no result from %s (%v): %s", n.name, err, lastLines(stderr.String(), 5))}
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
