// Package stack starts the whole set on one machine: private MariaDB and Redis (or given ones), the
// RocketMQ broker emulator, Toxiproxy in front of all three, and the FC emulator running the
// compiled functions of template.yml. `make run` and the end-to-end tests both use it.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/go-sql-driver/mysql"

	"github.com/benefit-issuance/benefits/local/apache"
	"github.com/benefit-issuance/benefits/local/faults"
	"github.com/benefit-issuance/benefits/local/fc"
	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/wiring/mqwiring"
)

// Options for Start. Zero values pick what `make run` uses.
type Options struct {
	Root          string // holds template.yml and dist/ (default: found upwards from the working folder)
	HTTPAddr      string // default 127.0.0.1:9000
	BrokerAddr    string // default 127.0.0.1:8081
	ToxiproxyAddr string // default 127.0.0.1:8474
	JWTSecret     string // default: random
	// TimeScale multiplies the RocketMQ triggers' retry schedule and the broker's (1 = real).
	TimeScale float64
	Timers    bool // run timer triggers on their cron schedules
	// MySQLBaseDSN and RedisAddr point at servers to use instead of starting private ones.
	MySQLBaseDSN string
	RedisAddr    string
	// RedisCluster starts a private Redis Cluster (three masters with a replica each) instead of a
	// standalone Redis. The functions reach it directly (REDIS_CLUSTER_ADDRS, REDIS_WAIT_REPLICAS=1),
	// not through Toxiproxy: a cluster redirects clients to its nodes' own addresses.
	RedisCluster bool
	Database     string // default: benefits
	MaxInstances int    // per function
	// RedisDurable runs the stack's own Redis with an append-only file fsynced on every write, as
	// production should run it, so that a crash restart loses nothing acknowledged.
	RedisDurable bool
	// BrokerDataDir keeps the broker's log on disk so that RestartBroker restarts it on its data
	// ("" keeps it in memory).
	BrokerDataDir string
	// TimerTimeScale runs the timer triggers' cron schedules on a clock this much faster than the wall
	// clock (0 or 1: real time), so that a fault suite sees minute timers fire every few seconds.
	TimerTimeScale float64
	// TriggerMaxRetries caps the RocketMQ triggers' retries (tests of the dead-letter queue).
	TriggerMaxRetries int
	// Broker is "emulator" (default) or "apache": Apache RocketMQ 5 itself (local/apache), started
	// for this stack with the template's topics created. BROKER in the environment sets the default.
	Broker string
	// NoFaultProxy leaves Toxiproxy out: the functions reach MySQL, Redis and the broker directly, as
	// in production, where nothing sits between them. Toxiproxy exists only to inject faults, and in
	// a claim rush it took about a quarter of the stack process's CPU (make bench's profile), so the
	// benchmarks run without it; anything that injects faults needs it.
	NoFaultProxy bool
	// PlaintextBroker has every RocketMQ client of the stack (the functions' and the triggers') speak
	// gRPC without TLS (the client's rocketmq.client.enableSsl=false), as clients inside a VPC may; the
	// emulator and Apache RocketMQ's proxy take both on one port. TLS on loopback was 6 % of the stack
	// process's CPU in make bench's profile. The triggers' clients read a process-wide switch, so it
	// stays off for the rest of the process (harmless: both brokers still take TLS).
	PlaintextBroker bool
	Env             map[string]string // extra function environment
	Output          io.Writer         // function logs
	Logger          *slog.Logger      // the stack's own progress
}

// Stack is a running set.
type Stack struct {
	HTTP      string // base URL of the HTTP triggers
	Broker    string // the broker's endpoint (direct)
	Toxiproxy string // Toxiproxy REST API URL; empty with NoFaultProxy
	MySQLDSN  string // direct DSN of the stack's database
	RedisAddr string // direct Redis address; empty with a cluster
	// RedisClusterAddrs are the cluster's seeds when the stack runs one, and Cluster the cluster.
	RedisClusterAddrs []string
	Cluster           *services.RedisCluster
	JWTSecret         string
	Emulator          *fc.Emulator
	BrokerEngine      *rocketmq.Broker // nil on Apache RocketMQ
	Apache            *apache.Broker   // nil on the emulator
	Template          *fctemplate.Template

	closers []func()
	mariadb *services.MariaDB // nil when MySQLBaseDSN was given
	redis   *services.Redis   // nil when RedisAddr was given
	broker  brokerRun
}

// brokerRun is what a broker restart needs to rebuild the broker on the same address and data.
type brokerRun struct {
	cfg rocketmq.Config
	srv *rocketmq.Server
}

// FindRoot walks up from the working folder to the folder holding template.yml.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "template.yml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("template.yml not found in this folder or above")
		}
		dir = parent
	}
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Start brings everything up and returns once /_local/health answers 200.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Root == "" {
		if o.Root, err = FindRoot(); err != nil {
			return nil, err
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.HTTPAddr, "127.0.0.1:9000")
	def(&o.BrokerAddr, "127.0.0.1:8081")
	def(&o.ToxiproxyAddr, "127.0.0.1:8474")
	def(&o.JWTSecret, randomSecret())
	def(&o.Database, "benefits")
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger
	s := &Stack{JWTSecret: o.JWTSecret}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	tpl, err := fctemplate.Load(filepath.Join(o.Root, "template.yml"))
	if err != nil {
		return nil, err
	}
	s.Template = tpl

	baseDSN := o.MySQLBaseDSN
	if baseDSN == "" {
		log.Info("starting a private MariaDB (installing mariadb-server first if it is missing)")
		m, err := services.StartMariaDB(ctx, services.Options{})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, m.Stop)
		s.mariadb = m
		baseDSN = m.DSN("")
		log.Info("MariaDB ready", "addr", m.Addr())
	}
	if err := services.CreateDatabase(ctx, baseDSN, o.Database); err != nil {
		return nil, err
	}
	dsnCfg, err := mysql.ParseDSN(baseDSN)
	if err != nil {
		return nil, err
	}
	dsnCfg.DBName = o.Database
	dsnCfg.ParseTime = true
	s.MySQLDSN = dsnCfg.FormatDSN()
	// Migrate once here so that five functions starting together do not all wait on the lock.
	store, err := mysqlstore.Open(ctx, s.MySQLDSN)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", o.Database, err)
	}
	store.Close()

	s.RedisAddr = o.RedisAddr
	if o.RedisCluster {
		log.Info("starting a private Redis Cluster (installing redis-server first if it is missing)")
		c, err := services.StartRedisCluster(ctx, services.Options{})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, c.Stop)
		s.Cluster, s.RedisClusterAddrs = c, c.Addrs()
		s.RedisAddr = ""
		log.Info("Redis Cluster ready", "seeds", strings.Join(c.Addrs(), ","))
	} else if s.RedisAddr == "" {
		log.Info("starting a private Redis (installing redis-server first if it is missing)")
		r, err := services.StartRedis(ctx, services.Options{Durable: o.RedisDurable})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, r.Stop)
		s.redis = r
		s.RedisAddr = r.Addr()
		log.Info("Redis ready", "addr", r.Addr())
	}

	// The RocketMQ client logs to a file; ours (the triggers) and the functions' go to one folder.
	clientLogs := filepath.Join(os.TempDir(), "benefits-rocketmq-client-logs")
	rmqclient.ConfigureClientLogging(clientLogs)
	if o.Broker == "" {
		o.Broker = os.Getenv("BROKER")
	}
	switch o.Broker {
	case "", "emulator":
		if err := s.startEmulator(o); err != nil {
			return nil, err
		}
	case "apache":
		if err := s.startApache(ctx, o, tpl); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown broker %q (emulator or apache)", o.Broker)
	}

	mysqlProxy, redisProxy, brokerProxy, ledgerMySQLProxy := dsnCfg.Addr, s.RedisAddr, s.Broker, dsnCfg.Addr
	if !o.NoFaultProxy {
		if mysqlProxy, redisProxy, brokerProxy, ledgerMySQLProxy, err = s.startToxiproxy(o, dsnCfg.Addr); err != nil {
			return nil, err
		}
	}

	viaProxy := *dsnCfg
	viaProxy.Addr = mysqlProxy
	env := map[string]string{
		"MYSQL_DSN": viaProxy.FormatDSN(), "REDIS_ADDR": redisProxy, "ROCKETMQ_ENDPOINT": brokerProxy,
		"JWT_SECRET": o.JWTSecret, "ROCKETMQ_INSTANCE_ID": "local",
		"RULE_CHANGES_DLQ_ARN":    "acs:mns:local:0:/queues/benefit-rule-changes-dlq",
		"GRANTS_DLQ_ARN":          "acs:mns:local:0:/queues/benefit-grants-dlq",
		"GRANT_STARTS_DLQ_ARN":    "acs:mns:local:0:/queues/benefit-grant-starts-dlq",
		"rocketmq.client.logRoot": clientLogs,
	}
	if s.Cluster != nil {
		delete(env, "REDIS_ADDR")
		env["REDIS_CLUSTER_ADDRS"] = strings.Join(s.RedisClusterAddrs, ",")
		env["REDIS_WAIT_REPLICAS"] = "1"
	}
	if o.PlaintextBroker {
		env[rmq.CLIENT_ENABLE_SSL] = "false"
		rmq.EnableSsl = false
	}
	for k, v := range o.Env {
		env[k] = v
	}
	ledgerDSN := *dsnCfg
	ledgerDSN.Addr = ledgerMySQLProxy
	out := o.Output
	if out == nil {
		out = io.Discard
	}
	emu, err := fc.Start(fc.Config{
		Template: tpl, Root: o.Root, Env: env, FunctionEnv: map[string]map[string]string{"ledger": {"MYSQL_DSN": ledgerDSN.FormatDSN()}}, HTTPAddr: o.HTTPAddr, BrokerEndpoint: s.Broker,
		TimeScale: o.TimeScale, TimerTimeScale: o.TimerTimeScale, MaxInstances: o.MaxInstances, MaxRetries: o.TriggerMaxRetries, Timers: o.Timers, Output: out, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, emu.Close)
	s.Emulator = emu
	s.HTTP = "http://" + emu.Addr()
	if err := waitHealthy(ctx, s.HTTP+"/_local/health"); err != nil {
		return nil, err
	}
	log.Info("FC emulator ready", "http", s.HTTP)
	return s, nil
}

// startToxiproxy puts a proxy in front of MySQL (two: the ledger has a link of its own), Redis (not a
// cluster's) and the broker, and returns the addresses the functions use.
func (s *Stack) startToxiproxy(o Options, mysqlAddr string) (mysqlProxy, redisProxy, brokerProxy, ledgerMySQLProxy string, err error) {
	tox, err := faults.Start(o.ToxiproxyAddr)
	if err != nil {
		return "", "", "", "", err
	}
	s.closers = append(s.closers, tox.Close)
	s.Toxiproxy = tox.URL()
	if mysqlProxy, err = tox.Proxy("mysql", mysqlAddr); err != nil {
		return "", "", "", "", err
	}
	if s.Cluster == nil {
		if redisProxy, err = tox.Proxy("redis", s.RedisAddr); err != nil {
			return "", "", "", "", err
		}
	}
	if brokerProxy, err = tox.Proxy("rocketmq", s.Broker); err != nil {
		return "", "", "", "", err
	}
	// The ledger reaches MySQL through a link of its own as well, so a fault can leave the ledger
	// unable to record grants while every other function works.
	if ledgerMySQLProxy, err = tox.Proxy("mysql-ledger", mysqlAddr); err != nil {
		return "", "", "", "", err
	}
	o.Logger.Info("Toxiproxy ready", "api", s.Toxiproxy, "mysql", mysqlProxy, "redis", redisProxy, "rocketmq", brokerProxy)
	return mysqlProxy, redisProxy, brokerProxy, ledgerMySQLProxy, nil
}

func (s *Stack) startEmulator(o Options) error {
	s.broker.cfg = rocketmq.Config{
		// The triggers' retry policy decides when an event is dead-lettered, as EventBridge does;
		// the broker's own limit only has to stay out of its way.
		MaxAttempts: 1000, TimeScale: o.TimeScale, Logger: o.Logger, DataDir: o.BrokerDataDir,
		// The FC triggers poll in short windows, as EventBridge's own consumers do; a stock proxy's
		// 5 s minimum long poll would refuse them (the only default the stack changes).
		MinLongPolling: 100 * time.Millisecond,
	}
	if err := s.startBroker(o.BrokerAddr); err != nil {
		return err
	}
	s.closers = append(s.closers, s.stopBroker)
	o.Logger.Info("RocketMQ broker emulator ready", "endpoint", s.Broker)
	return nil
}

// startApache runs Apache RocketMQ for this stack on free ports (BrokerAddr is not used) and creates
// the topics and groups the functions and their triggers use: the real broker creates none for gRPC
// clients.
func (s *Stack) startApache(ctx context.Context, o Options, tpl *fctemplate.Template) error {
	cache, err := apache.ModuleCacheDir(o.Root)
	if err != nil {
		return err
	}
	o.Logger.Info("starting Apache RocketMQ (fetching its jars with Maven first if they are missing)")
	b, err := apache.Start(ctx, apache.Config{CacheDir: cache, Log: apacheLog{o.Logger}})
	if err != nil {
		return err
	}
	s.closers = append(s.closers, b.Stop)
	// The template's topics (grant starts are delay messages, which the real broker takes only on a
	// DELAY topic), and the dead-letter topics that fc's triggers derive from the DLQ ARNs this stack
	// sets (fc dlqTopicOf: the ARN's last segment).
	var topics []apache.Topic
	for _, v := range []struct{ name, kind string }{{"topicRuleChanges", "NORMAL"}, {"topicGrants", "NORMAL"}, {"topicGrantStarts", "DELAY"}} {
		name, _ := tpl.Vars[v.name].(string)
		if name == "" {
			return fmt.Errorf("template.yml has no vars.%s", v.name)
		}
		topics = append(topics, apache.Topic{Name: name, Type: v.kind}, apache.Topic{Name: name + "-dlq", Type: "NORMAL"})
	}
	// Consumer groups too: the proxy refuses a gRPC consumer whose group does not exist ("group not
	// found"), whatever autoCreateSubscriptionGroup says. The template's trigger groups, the timer's
	// backstop group on the grants topic, and the end-to-end tests' DLQ reader.
	groups := []apache.Group{{Name: mqwiring.DefaultBackstopGroup}, {Name: "GID_e2e_dlq_reader"}}
	for _, f := range tpl.Functions() {
		for _, tr := range f.Triggers {
			if tr.TriggerType != fctemplate.TriggerEventBridge {
				continue
			}
			ec, err := tr.EventBridge()
			if err != nil {
				return err
			}
			if src, ok := ec.RocketMQ(); ok {
				groups = append(groups, apache.Group{Name: src.GroupID})
			}
		}
	}
	if err := b.EnsureTopics(ctx, topics, groups); err != nil {
		return err
	}
	s.Broker, s.Apache = b.Endpoint(), b
	o.Logger.Info("Apache RocketMQ ready", "endpoint", s.Broker, "start", b.StartTime.Round(100*time.Millisecond))
	return nil
}

// apacheLog turns local/apache's progress lines into the stack's log.
type apacheLog struct{ log *slog.Logger }

func (l apacheLog) Write(p []byte) (int, error) {
	l.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitHealthy(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never answered 200", url)
}

// Close stops everything in reverse order of start.
func (s *Stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (s *Stack) startBroker(addr string) error {
	broker, err := rocketmq.New(s.broker.cfg)
	if err != nil {
		return err
	}
	srv, err := rocketmq.Listen(broker, addr)
	if err != nil {
		broker.Close()
		return fmt.Errorf("broker: %w", err)
	}
	s.broker.srv = srv
	s.Broker, s.BrokerEngine = srv.Addr(), broker
	return nil
}

func (s *Stack) stopBroker() {
	if s.broker.srv != nil {
		s.broker.srv.Close()
		s.BrokerEngine.Close()
		s.broker.srv = nil
	}
}

// RestartBroker stops the broker and starts it again on the same address and data. The emulator
// stops as a crash would (connections cut, nothing flushed beyond what each acknowledged send already
// fsynced; without BrokerDataDir it comes back empty); Apache RocketMQ restarts its JVMs on its store.
func (s *Stack) RestartBroker(ctx context.Context) error {
	if s.Apache != nil {
		return s.Apache.Restart(ctx)
	}
	s.stopBroker()
	return s.startBroker(s.Broker)
}

// RestartRedis restarts the stack's own Redis, empty (a cache loss) or from a snapshot of its data.
func (s *Stack) RestartRedis(ctx context.Context, keepData bool) error {
	if s.redis == nil {
		return errors.New("stack: Redis was given, not started by the stack; it cannot be restarted")
	}
	if keepData {
		return s.redis.RestartWithData(ctx)
	}
	return s.redis.Restart(ctx)
}

// RestartMySQL kills the stack's own MariaDB and starts it again on its data.
func (s *Stack) RestartMySQL(ctx context.Context) error {
	if s.mariadb == nil {
		return errors.New("stack: MySQL was given, not started by the stack; it cannot be restarted")
	}
	return s.mariadb.Restart(ctx)
}
