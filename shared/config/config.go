// Package config reads a function's settings from its environment, as template.yml declares them, and
// refuses to start on a missing or malformed one rather than failing on the first request.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Env looks a variable up; os.LookupEnv in production, a map in tests.
type Env func(name string) (string, bool)

// Config is every setting any function reads; each main uses what it needs and Require names the rest.
type Config struct {
	MySQLDSN          string
	RedisAddr         string   // standalone Redis, or a cluster's proxy endpoint
	RedisCluster      []string // seed addresses of a Redis Cluster reached directly; empty: RedisAddr
	RedisPassword     string
	RedisWaitReplicas int           // replicas that must hold a claim's writes before it is acknowledged
	RedisWaitTimeout  time.Duration // how long a claim waits for them
	RocketMQ          string
	RocketMQAccess    string
	RocketMQSecret    string
	RocketMQNS        string
	JWTSecret         string
	LogLevel          string
	TopicChanges      string
	TopicGrants       string
	TopicStarts       string        // delay messages for grant campaigns' starts
	ClaimRateLimit    int           // claims per user per second; 0 disables the limit
	SyncWait          time.Duration // how long admin writes wait for the cache (≤ 2 s)
	PendingTimeout    time.Duration // age after which the timer resolves a half-finished points claim
	ReconcileGrace    time.Duration // campaigns ended longer ago than this are no longer reconciled
	GrantBatchLimit   int
}

// Setting names, as template.yml sets them.
const (
	EnvMySQLDSN       = "MYSQL_DSN"
	EnvRedisAddr      = "REDIS_ADDR"
	EnvRedisCluster   = "REDIS_CLUSTER_ADDRS"
	EnvRedisPassword  = "REDIS_PASSWORD"
	EnvRedisWait      = "REDIS_WAIT_REPLICAS"
	EnvRedisWaitFor   = "REDIS_WAIT_TIMEOUT"
	EnvRocketMQ       = "ROCKETMQ_ENDPOINT"
	EnvRocketMQAccess = "ROCKETMQ_ACCESS_KEY"
	EnvRocketMQSecret = "ROCKETMQ_SECRET_KEY"
	EnvRocketMQNS     = "ROCKETMQ_NAMESPACE"
	EnvJWTSecret      = "JWT_SECRET"
	EnvLogLevel       = "LOG_LEVEL"
	EnvTopicChanges   = "TOPIC_RULE_CHANGES"
	EnvTopicGrants    = "TOPIC_GRANTS"
	EnvTopicStarts    = "TOPIC_GRANT_STARTS"
	EnvClaimRateLimit = "CLAIM_RATE_LIMIT"
	EnvSyncWait       = "CACHE_SYNC_WAIT"
	EnvPendingTimeout = "PENDING_CLAIM_TIMEOUT"
	EnvReconcileGrace = "RECONCILE_GRACE"
	EnvGrantBatch     = "GRANT_BATCH_LIMIT"
)

// Load reads every setting, applying defaults; malformed numbers and durations are errors.
func Load(env Env) (Config, error) {
	get := func(name, def string) string {
		if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	c := Config{
		MySQLDSN:       get(EnvMySQLDSN, ""),
		RedisAddr:      get(EnvRedisAddr, ""),
		RedisPassword:  get(EnvRedisPassword, ""),
		RocketMQ:       get(EnvRocketMQ, ""),
		RocketMQAccess: get(EnvRocketMQAccess, ""),
		RocketMQSecret: get(EnvRocketMQSecret, ""),
		RocketMQNS:     get(EnvRocketMQNS, ""),
		JWTSecret:      get(EnvJWTSecret, ""),
		LogLevel:       get(EnvLogLevel, "info"),
		TopicChanges:   get(EnvTopicChanges, "benefit-rule-changes"),
		TopicGrants:    get(EnvTopicGrants, "benefit-grants"),
		TopicStarts:    get(EnvTopicStarts, "benefit-grant-starts"),
	}
	var errs []error
	if v := get(EnvRedisCluster, ""); v != "" {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.RedisCluster = append(c.RedisCluster, a)
			}
		}
	}
	if len(c.RedisCluster) > 0 && c.RedisAddr != "" {
		// Which one a function would use must not depend on reading the code: set exactly one.
		errs = append(errs, fmt.Errorf("set either %s (standalone Redis or a cluster proxy) or %s (cluster seeds), not both", EnvRedisAddr, EnvRedisCluster))
	}
	num := func(name string, def int) int {
		s := get(name, strconv.Itoa(def))
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s must be a non-negative integer, got %q", name, s))
		}
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		s := get(name, def.String())
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s must be a duration such as 2s, got %q", name, s))
		}
		return d
	}
	c.ClaimRateLimit = num(EnvClaimRateLimit, 20)
	c.GrantBatchLimit = num(EnvGrantBatch, 500)
	c.RedisWaitReplicas = num(EnvRedisWait, 0)
	c.RedisWaitTimeout = dur(EnvRedisWaitFor, 100*time.Millisecond)
	c.SyncWait = dur(EnvSyncWait, 2*time.Second)
	c.PendingTimeout = dur(EnvPendingTimeout, 30*time.Second)
	c.ReconcileGrace = dur(EnvReconcileGrace, 24*time.Hour)
	if c.SyncWait > 2*time.Second {
		errs = append(errs, fmt.Errorf("%s must be at most 2s (the HTTP contract), got %s", EnvSyncWait, c.SyncWait))
	}
	return c, errors.Join(errs...)
}

// Require names every setting in names that is empty, so a misconfigured function says all of what is
// missing at once. EnvRedisAddr is satisfied by EnvRedisCluster too: either reaches the cache.
func (c Config) Require(names ...string) error {
	redis := c.RedisAddr
	if len(c.RedisCluster) > 0 {
		redis = strings.Join(c.RedisCluster, ",")
	}
	values := map[string]string{
		EnvMySQLDSN: c.MySQLDSN, EnvRedisAddr: redis, EnvRocketMQ: c.RocketMQ, EnvJWTSecret: c.JWTSecret,
		EnvTopicChanges: c.TopicChanges, EnvTopicGrants: c.TopicGrants, EnvTopicStarts: c.TopicStarts,
	}
	var missing []string
	for _, n := range names {
		if values[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required settings: %s", strings.Join(missing, ", "))
	}
	return nil
}
