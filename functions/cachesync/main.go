// Command cachesync applies rule changes from RocketMQ to Redis behind a version fence.
package main

import (
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
	fc.Start(mqhandler.Invocation(cachesync.New(store, cache).Handler(), log))
}
