// Command claim is the claim API (HTTP trigger): one Lua call per Redis slot decides each claim, and
// its grant is in RocketMQ or MySQL before the user is told. template.yml runs it as a custom runtime
// ("main serve", many claims per instance); without the argument it is a go1 function.
package main

import (
	"time"

	"github.com/benefit-issuance/benefits/shared/claiming"
	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/httpfc"
	"github.com/benefit-issuance/benefits/shared/wiring"
	"github.com/benefit-issuance/benefits/shared/wiring/mqwiring"
)

func main() {
	cfg, log := wiring.Load("claim", config.EnvMySQLDSN, config.EnvRedisAddr, config.EnvRocketMQ, config.EnvJWTSecret)
	store := wiring.Must(wiring.MySQL(cfg))
	cache := wiring.Must(wiring.Redis(cfg))
	pub := wiring.Must(mqwiring.Publisher(cfg))
	verifier := wiring.Must(wiring.Verifier(cfg))
	api := claiming.New(cache, pub, store, verifier, time.Now, claiming.Config{RateLimit: cfg.ClaimRateLimit})
	httpfc.Run(api, log)
}
