// Command timer runs the scheduled jobs (grants, outbox relay, grant replay, grant backstop,
// reconciliation, rebuild) and starts grant campaigns on time from their delay messages.
package main

import (
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/fc"

	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/timer"
	"github.com/benefit-issuance/benefits/shared/wiring"
	"github.com/benefit-issuance/benefits/shared/wiring/mqwiring"
)

func main() {
	cfg, log := wiring.Load("timer", config.EnvMySQLDSN, config.EnvRedisAddr, config.EnvRocketMQ)
	store := wiring.Must(wiring.MySQL(cfg))
	cache := wiring.Must(wiring.Redis(cfg))
	pub := wiring.Must(mqwiring.Publisher(cfg))
	backstop := mqwiring.GrantBackstop(cfg)
	emptyReceives := wiring.Must(mqwiring.BackstopEmptyReceives())
	jobs := timer.New(store, cache, pub, backstop, time.Now, timer.Config{
		PendingTimeout: cfg.PendingTimeout, ReconcileGrace: cfg.ReconcileGrace, GrantBudget: cfg.GrantBatchLimit,
		DrainEmptyReceives: emptyReceives,
	})
	fc.Start(timer.Entry(jobs, timer.NewGrantStarts(jobs, pub, domain.DefaultGrantStartPlan()), log))
}
