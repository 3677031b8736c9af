// Command cachesync applies rule changes from RocketMQ to Redis behind a version fence.
package main

import (
	"context"

	"github.com/aliyun/fc-runtime-go-sdk/fc"

	"github.com/benefit-issuance/benefits/shared/cachesync"
	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/wiring"
)

func main() {
	cfg, log := wiring.Load("cachesync", config.EnvMySQLDSN, config.EnvRedisAddr)
	store := wiring.Must(wiring.MySQL(cfg))
	cache := wiring.Must(wiring.Redis(cfg))
	// A client of its own for the probe: it dials only while a change is held, and a PING on it
	// answers whether Redis can be reached at all, not whether the cache is complete.
	probe := wiring.RedisClient(cfg)
	syncer := cachesync.New(store, cache).HoldWhileUnreachable(func(ctx context.Context) error { return probe.Ping(ctx).Err() })
	fc.Start(mqhandler.Invocation(syncer.Handler(), log))
}
