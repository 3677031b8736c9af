// Package apache runs Apache RocketMQ 5 itself (name server, and broker with the gRPC proxy embedded in
// "local" mode) privately on free loopback ports, so that the suites that run against our emulator can
// run against the real broker too. The server jars come from Maven Central through the pom beside this
// file (the version is pinned there) into a cache folder that git ignores; Java and Maven are installed
// from Debian when missing.
package apache

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed pom.xml
var pom []byte

//go:embed Admin.java
var adminSource []byte

// Topic is a topic the broker must have before gRPC clients use it: the proxy answers a route query for
// an unknown topic with TOPIC_NOT_FOUND (auto-creation serves the remoting protocol only; proxy
// service/route/TopicRouteService.java) and refuses a message whose type differs from the topic's
// message.type attribute (proxy processor/validator/DefaultTopicMessageTypeValidator.java).
type Topic struct {
	Name string
	Type string // NORMAL, FIFO, DELAY or TRANSACTION
}

// Group is a consumer group's subscription config: a group's delivery attempts and whether it consumes
// FIFO topics in order come from it, not from the client (proxy grpc/v2/common/GrpcClientSettingsManager.java
// reads retryMaxTimes and consumeMessageOrderly).
type Group struct {
	Name string
	// MaxAttempts is the delivery attempts before %DLQ%<group>; the broker stores retryMaxTimes =
	// MaxAttempts-1. 0: the broker's default, 16 retries (SubscriptionGroupConfig.retryMaxTimes).
	MaxAttempts int
	FIFO        bool
}

const defaultRetryMaxTimes = 16

// Config says where the jars are cached, where the store lives and how the JVMs are sized.
type Config struct {
	CacheDir string    // jar cache; the pom and the admin helper are written here too
	DataDir  string    // the store; empty: a temporary folder removed by Stop
	Log      io.Writer // progress lines; the JVMs' own output goes to files in the data folder
	HeapMB   int       // broker+proxy heap (-Xms = -Xmx); the name server gets a quarter of it
}

// Broker is a running name server and broker+proxy pair.
type Broker struct {
	cfg     Config
	java    string
	lib     string
	dir     string
	tempDir bool
	ports   ports
	namesrv *proc
	proxy   *proc
	// StartTime is how long the last start took until the gRPC endpoint answered a route query.
	StartTime time.Duration
	topics    []Topic // created by EnsureTopics, waited for after a restart
}

type ports struct{ namesrv, broker, ha, remoting, grpc int }

// proc is a started JVM; exited closes when it has been waited for.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// ModuleCacheDir is local/apache/.cache in the module that contains dir (or one of its parents).
func ModuleCacheDir(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "local", "apache", ".cache"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

func (c Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "apache-rocketmq: "+format+"\n", args...)
	}
}

// Fetch makes sure Java and Maven are there (installing Debian's packages when not) and the server jars
// are in the cache, and returns the java binary and the jar folder.
func Fetch(ctx context.Context, cfg Config) (java, lib string, err error) {
	if err := ensureTools(ctx, cfg); err != nil {
		return "", "", err
	}
	java, err = exec.LookPath("java")
	if err != nil {
		return "", "", err
	}
	lib = filepath.Join(cfg.CacheDir, "lib")
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return "", "", err
	}
	pomPath := filepath.Join(cfg.CacheDir, "pom.xml")
	old, _ := os.ReadFile(pomPath)
	stamp := filepath.Join(lib, ".complete")
	if _, err := os.Stat(stamp); err == nil && bytes.Equal(old, pom) {
		return java, lib, nil
	}
	if err := os.RemoveAll(lib); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return "", "", err
	}
	cfg.logf("fetching the server jars with Maven into %s", lib)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "mvn", "-B", "-q", "-f", pomPath, "dependency:copy-dependencies", "-DoutputDirectory="+lib)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("mvn dependency:copy-dependencies: %v\n%s", err, out)
	}
	cfg.logf("jars fetched in %s", time.Since(start).Round(time.Second))
	return java, lib, os.WriteFile(stamp, nil, 0o644)
}

// EnsureTools installs Java (a JDK, with javac) and Maven from Debian when missing, as Fetch does; the
// conformance matrix's Java client needs them before any broker starts.
func EnsureTools(ctx context.Context, log io.Writer) error { return ensureTools(ctx, Config{Log: log}) }

func ensureTools(ctx context.Context, cfg Config) error {
	var missing []string
	if _, err := exec.LookPath("java"); err != nil {
		missing = append(missing, "default-jdk-headless")
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		missing = append(missing, "maven")
	}
	if len(missing) == 0 {
		return nil
	}
	cfg.logf("installing Debian packages %s", strings.Join(missing, " "))
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v\n%s", err, out)
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install: %v\n%s", err, out)
	}
	return nil
}

// Start fetches what is missing, starts the name server and the broker with its proxy, and waits until
// the gRPC endpoint answers.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.HeapMB == 0 {
		cfg.HeapMB = 384
	}
	java, lib, err := Fetch(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, java: java, lib: lib, dir: cfg.DataDir}
	if b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "apache-rocketmq-"); err != nil {
			return nil, err
		}
		b.tempDir = true
	}
	// The ports are free when picked but not held until the JVMs bind them; on a busy machine
	// another process can take one first, so a failed start is tried once more on new ports.
	for attempt := 1; ; attempt++ {
		if b.ports, err = freePorts(); err != nil {
			return nil, err
		}
		err = b.start(ctx)
		if err == nil {
			return b, nil
		}
		err = fmt.Errorf("%w\n%s", err, b.outputTail())
		b.stopJVMs()
		if attempt == 2 || ctx.Err() != nil {
			b.Stop()
			return nil, err
		}
		cfg.logf("start failed, trying again on other ports: %v", err)
	}
}

// outputTail is the end of the JVMs' console output, for an error that removes the folder.
func (b *Broker) outputTail() string {
	var sb strings.Builder
	for _, name := range []string{"namesrv.out", "proxy.out"} {
		data, _ := os.ReadFile(filepath.Join(b.dir, name))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&sb, "--- %s\n%s\n", name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return sb.String()
}

// Endpoint is the gRPC proxy's address, for the official clients.
func (b *Broker) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(b.ports.grpc) }

// NameServer is the name server's address, for the admin tools.
func (b *Broker) NameServer() string { return "127.0.0.1:" + strconv.Itoa(b.ports.namesrv) }

// Dir is the broker's folder: configuration, store and the JVMs' logs.
func (b *Broker) Dir() string { return b.dir }

func (b *Broker) start(ctx context.Context) error {
	begin := time.Now()
	if err := b.writeConfig(); err != nil {
		return err
	}
	heap := fmt.Sprintf("%dm", b.cfg.HeapMB)
	nsHeap := fmt.Sprintf("%dm", max(64, b.cfg.HeapMB/4))
	var err error
	b.namesrv, err = b.jvm("namesrv.out", nsHeap, "org.apache.rocketmq.namesrv.NamesrvStartup", "-c", filepath.Join(b.dir, "conf", "namesrv.conf"))
	if err != nil {
		return err
	}
	// Local mode: the proxy starts the broker in its own JVM from the broker config (proxy
	// ProxyStartup.java createMessagingProcessor -> BrokerStartup.createBrokerController).
	b.proxy, err = b.jvm("proxy.out", heap, "org.apache.rocketmq.proxy.ProxyStartup",
		"-pm", "local", "-bc", filepath.Join(b.dir, "conf", "broker.conf"), "-pc", filepath.Join(b.dir, "conf", "rmq-proxy.json"))
	if err != nil {
		return err
	}
	if err := b.waitReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	b.StartTime = time.Since(begin)
	b.cfg.logf("ready at %s (name server %s) in %s; store %s", b.Endpoint(), b.NameServer(), b.StartTime.Round(100*time.Millisecond), b.dir)
	return nil
}

func (b *Broker) writeConfig() error {
	conf := filepath.Join(b.dir, "conf")
	store := filepath.Join(b.dir, "store")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return err
	}
	p := b.ports
	files := map[string]string{
		"namesrv.conf": fmt.Sprintf("listenPort=%d\nbindAddress=127.0.0.1\n", p.namesrv),
		"broker.conf": strings.Join([]string{
			"brokerClusterName=DefaultCluster", "brokerName=broker-a", "brokerId=0", "brokerIP1=127.0.0.1",
			"bindAddress=127.0.0.1",
			fmt.Sprintf("listenPort=%d", p.broker), fmt.Sprintf("haListenPort=%d", p.ha),
			fmt.Sprintf("namesrvAddr=%s", b.NameServer()),
			"storePathRootDir=" + store, "storePathCommitLog=" + filepath.Join(store, "commitlog"),
			// Small files: the defaults map 1 GiB of commit log up front.
			"mappedFileSizeCommitLog=67108864",
			// Topics and groups are created explicitly (EnsureTopics), as gRPC clients need.
			"autoCreateTopicEnable=false", "autoCreateSubscriptionGroup=true",
			// Short transaction check-back: a half message is checked once it is 1 s old, every second
			// (broker transaction/queue/TransactionalMessageServiceImpl.check; defaults 6 s and 30 s).
			"transactionTimeOut=1000", "transactionCheckInterval=1000", "transactionCheckMax=3",
			// SQL92 filters, as the emulator refuses them: the broker evaluates them when enabled.
			"enablePropertyFilter=true",
			"",
		}, "\n"),
		"rmq-proxy.json": fmt.Sprintf(`{"rocketMQClusterName":"DefaultCluster","namesrvAddr":%q,"grpcServerPort":%d,"remotingListenPort":%d,`+
			// A receive whose deadline leaves less than this is refused, and invisible times below the
			// minimum are refused (proxy config/ProxyConfig.java; defaults 5 s and 10 s).
			`"grpcClientConsumerMinLongPollingTimeoutMillis":100,"minInvisibleTimeMillsForRecv":1000,`+
			// Route and topic caches refresh every 20 s by default; a topic created a moment ago must be seen.
			`"topicRouteServiceCacheExpiredSeconds":2,"topicRouteServiceCacheRefreshSeconds":1}`,
			b.NameServer(), p.grpc, p.remoting),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) jvm(logName, heap, main string, args ...string) (*proc, error) {
	out, err := os.Create(filepath.Join(b.dir, logName))
	if err != nil {
		return nil, err
	}
	jargs := []string{"-Xms" + heap, "-Xmx" + heap, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Duser.home=" + b.dir, "-Drocketmq.home.dir=" + b.dir, "-cp", filepath.Join(b.lib, "*"), main}
	cmd := exec.Command(b.java, append(jargs, args...)...)
	// The broker refuses to start without ROCKETMQ_HOME; its logs go to ${user.home}/logs.
	cmd.Env = append(os.Environ(), "ROCKETMQ_HOME="+b.dir)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group keeps a terminal's Ctrl-C from killing it before Stop's clean stop; the
	// death signal stops it should this process die without calling Stop (a killed test binary left
	// both JVMs running, 600 MB).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); out.Close(); close(p.exited) }()
	return p, nil
}

// Stop stops both JVMs (SIGTERM lets the broker flush and unregister; SIGKILL after 30 s) and removes a
// temporary store.
func (b *Broker) Stop() {
	b.stopJVMs()
	if b.tempDir {
		_ = os.RemoveAll(b.dir)
	}
}

func (b *Broker) stopJVMs() {
	for _, p := range []*proc{b.proxy, b.namesrv} {
		if p == nil {
			continue
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	b.proxy, b.namesrv = nil, nil
}

// Restart stops both JVMs and starts them again on the same store and the same ports. The new name
// server knows no route until the broker has registered its topics again, so it also waits for the
// routes of the topics EnsureTopics created.
func (b *Broker) Restart(ctx context.Context) error {
	b.stopJVMs()
	if err := b.start(ctx); err != nil {
		return err
	}
	return b.waitRoutes(ctx, b.topics)
}

// RSS is the resident memory of the name server and of the broker+proxy JVM, in bytes.
func (b *Broker) RSS() (namesrv, broker int64) {
	return rss(b.namesrv), rss(b.proxy)
}

func rss(p *proc) int64 {
	if p == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// EnsureTopics creates topics and subscription groups through the broker's admin API, in one JVM.
func (b *Broker) EnsureTopics(ctx context.Context, topics []Topic, groups []Group) error {
	src := filepath.Join(b.cfg.CacheDir, "Admin.java")
	if err := os.WriteFile(src, adminSource, 0o644); err != nil {
		return err
	}
	args := []string{"-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Duser.home=" + b.dir, "-cp", filepath.Join(b.lib, "*"), src,
		"127.0.0.1:" + strconv.Itoa(b.ports.broker), b.NameServer()}
	for _, t := range topics {
		args = append(args, "topic:"+t.Name+":"+t.Type)
	}
	for _, g := range groups {
		// retryMaxTimes 0 would mean one delivery and then the DLQ; unset means the broker's 16.
		retries := defaultRetryMaxTimes
		if g.MaxAttempts > 0 {
			retries = g.MaxAttempts - 1
		}
		args = append(args, fmt.Sprintf("group:%s:%d:%t", g.Name, retries, g.FIFO))
	}
	out, err := exec.CommandContext(ctx, b.java, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("creating topics and groups: %v\n%s", err, out)
	}
	b.topics = append(b.topics, topics...)
	return b.waitRoutes(ctx, topics)
}

// freePorts picks the ports: the broker also listens on its port minus 2 (the "fast" remoting server,
// broker BrokerController.java: fastConfig.setListenPort(listenPort - 2)), so that one must be free too.
func freePorts() (ports, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	grab := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var p ports
	for i := 0; i < 50 && p.broker == 0; i++ {
		port, err := grab()
		if err != nil {
			return p, err
		}
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port-2)); err == nil {
			held = append(held, l)
			p.broker = port
		}
	}
	if p.broker == 0 {
		return p, errors.New("no free port pair for the broker")
	}
	for _, dst := range []*int{&p.namesrv, &p.ha, &p.remoting, &p.grpc} {
		port, err := grab()
		if err != nil {
			return p, err
		}
		*dst = port
	}
	return p, nil
}
