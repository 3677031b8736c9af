// Package wiring builds the adapters every function main needs from its configuration, so the mains
// stay a few lines long and agree on pool sizes and timeouts.
package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/obs"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Load reads the configuration, requires the named settings and returns it with the function's logger.
// A function that cannot start says why on stderr and exits non-zero, which FC reports as an init error.
func Load(function string, required ...string) (config.Config, *slog.Logger) {
	cfg, err := config.Load(os.LookupEnv)
	if err == nil {
		err = cfg.Require(required...)
	}
	log := obs.NewLogger(os.Stderr, cfg.LogLevel, function)
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(2)
	}
	return cfg, log
}

// Must stops the function at start-up on a wiring error.
func Must[T any](v T, err error) T {
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("start-up failed", "error", err.Error())
		os.Exit(2)
	}
	return v
}

// startUp is how a starting instance retries a dependency that refuses or times out: a broker or
// database blinking during a cold start costs the first request a few seconds instead of an instance
// that exits and a 502. The budget stays under the shortest function timeout (10 s).
var startUp = retryPolicy{budget: 6 * time.Second, first: 100 * time.Millisecond, max: time.Second}

type retryPolicy struct{ budget, first, max time.Duration }

// RetryStartUp is how a starting instance opens a dependency: retried with the startUp policy.
func RetryStartUp[T any](what string, open func() (T, error)) (T, error) {
	return retry(startUp, what, open)
}

// retry calls open until it succeeds, fails for good (fault.IsRetryable says no), or the next wait
// would pass the budget; it returns the last error, with the number of attempts made.
func retry[T any](p retryPolicy, what string, open func() (T, error)) (T, error) {
	deadline := time.Now().Add(p.budget)
	wait := p.first
	for attempt := 1; ; attempt++ {
		v, err := open()
		if err == nil {
			return v, nil
		}
		if !fault.IsRetryable(err) || time.Now().Add(wait).After(deadline) {
			if attempt > 1 {
				err = fmt.Errorf("%s (after %d attempts): %w", what, attempt, err)
			}
			return v, err
		}
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Warn("start-up retrying", "dependency", what, "attempt", attempt, "error", err.Error())
		time.Sleep(wait)
		wait = min(2*wait, p.max)
	}
}

// MySQL opens the store and applies migrations.
func MySQL(cfg config.Config) (*mysqlstore.Store, error) {
	return retry(startUp, "mysql", func() (*mysqlstore.Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), startUp.budget)
		defer cancel()
		s, err := mysqlstore.Open(ctx, cfg.MySQLDSN)
		if err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		return s, nil
	})
}

// Redis connects the cache. Timeouts are short: a claim must fail closed (503) quickly rather than
// hang the 10:00 rush behind a sick connection.
func Redis(cfg config.Config) (*rediscache.Cache, error) {
	return rediscache.NewWith(RedisClient(cfg), rediscache.Options{
		ReplicaAcks: cfg.RedisWaitReplicas, ReplicaAckTimeout: cfg.RedisWaitTimeout,
	}), nil
}

// RedisClient is the client for cfg: go-redis's cluster client when REDIS_CLUSTER_ADDRS names a
// cluster's seeds, otherwise the plain client on REDIS_ADDR, which serves a standalone Redis and a
// cluster's proxy endpoint alike (the proxy routes each command by its keys; rediscache never sends one
// whose keys span two slots).
func RedisClient(cfg config.Config) redis.UniversalClient {
	const (
		dial    = 2 * time.Second
		read    = time.Second
		write   = time.Second
		pool    = 16
		retries = 1
	)
	if len(cfg.RedisCluster) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.RedisCluster, Password: cfg.RedisPassword,
			DialTimeout: dial, ReadTimeout: read, WriteTimeout: write, PoolSize: pool, MaxRetries: retries,
			// A master that dies answers no MOVED, so only a reload of the slot map finds its heir; the
			// default (60 s) would keep its slots failing for a minute after the replica took over.
			ClusterStateReloadInterval: time.Second,
			// Reads stay on masters: a replica's lag would let the version fences and stock checks see
			// the past.
			ReadOnly: false,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: cfg.RedisAddr, Password: cfg.RedisPassword,
		DialTimeout: dial, ReadTimeout: read, WriteTimeout: write, PoolSize: pool, MaxRetries: retries,
	})
}

// Verifier checks bearer tokens.
func Verifier(cfg config.Config) (*auth.Verifier, error) {
	return auth.NewVerifier(cfg.JWTSecret, time.Now)
}
