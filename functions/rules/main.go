// Command rules is the admin API (HTTP trigger): campaigns, users, points credits.
package main

import (
	"crypto/rand"

	"github.com/aliyun/fc-runtime-go-sdk/fc"

	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/httpfc"
	"github.com/benefit-issuance/benefits/shared/rules"
	"github.com/benefit-issuance/benefits/shared/wiring"
	"github.com/benefit-issuance/benefits/shared/wiring/mqwiring"
)

func main() {
	cfg, log := wiring.Load("rules", config.EnvMySQLDSN, config.EnvRedisAddr, config.EnvRocketMQ, config.EnvJWTSecret)
	store := wiring.Must(wiring.MySQL(cfg))
	cache := wiring.Must(wiring.Redis(cfg))
	pub := wiring.Must(mqwiring.Publisher(cfg))
	verifier := wiring.Must(wiring.Verifier(cfg))
	api := rules.New(store, cache, pub, verifier, rand.Reader, rules.Config{SyncWait: cfg.SyncWait})
	fc.Start(httpfc.Handler(api, log))
}
