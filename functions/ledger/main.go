// Command ledger writes grants from RocketMQ to MySQL, idempotently, one transaction per batch.
package main

import (
	"github.com/aliyun/fc-runtime-go-sdk/fc"

	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/ledger"
	"github.com/benefit-issuance/benefits/shared/wiring"
)

func main() {
	cfg, log := wiring.Load("ledger", config.EnvMySQLDSN)
	store := wiring.Must(wiring.MySQL(cfg))
	fc.Start(ledger.New(store).Invocation(log))
}
