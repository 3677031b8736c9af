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
	"github.com/benefit-issuance/benefits/shared/mq"
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

// MySQL opens the store and applies migrations.
func MySQL(cfg config.Config) (*mysqlstore.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mysqlstore.Open(ctx, cfg.MySQLDSN)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return s, nil
}

// Redis connects the cache. Timeouts are short: a claim must fail closed (503) quickly rather than
// hang the 10:00 rush behind a sick connection.
func Redis(cfg config.Config) (*rediscache.Cache, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr:         cfg.RedisAddr,
		Password:     cfg.RedisPassword,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		PoolSize:     16,
		MaxRetries:   1,
	})
	return rediscache.New(rdb), nil
}

// Publisher starts the RocketMQ producer.
func Publisher(cfg config.Config) (*mq.Publisher, error) {
	return mq.NewPublisher(mq.Config{
		Endpoint: cfg.RocketMQ, AccessKey: cfg.RocketMQAccess, SecretKey: cfg.RocketMQSecret, Namespace: cfg.RocketMQNS,
		ChangesTopic: cfg.TopicChanges, GrantsTopic: cfg.TopicGrants, GrantStartsTopic: cfg.TopicStarts,
	})
}

// Verifier checks bearer tokens.
func Verifier(cfg config.Config) (*auth.Verifier, error) {
	return auth.NewVerifier(cfg.JWTSecret, time.Now)
}
