package main

import (
	"context"
	"flag"
	"strings"
)

// The rows of issue #13 that the first table listed as "not measured yet". They run after the other
// steps: the ledger drain leaves a large claims table and the outage and wipe rows disturb Redis, and
// neither must colour the rows before them.
var (
	ledgerGrants = flag.Int("ledger-grants", 200_000, "grants in the ledger drain row's backlog (the issue asks for 1,000,000; the default keeps make bench under 10 minutes)")
)

func (b *bench) issueRows(ctx context.Context) {
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"ledger drain into MariaDB vs batched INSERTs (issue #13)", b.ledgerRows},
		{"convergence after a Redis outage (issue #13)", func(ctx context.Context) error { return b.onSecondStack(ctx, b.convergenceRows) }},
		{"claims after a cache wipe mid-rush (issue #13)", func(ctx context.Context) error { return b.onSecondStack(ctx, b.wipeRows) }},
	}
	for _, st := range steps {
		if b.only != "" && !strings.Contains(st.name, b.only) {
			continue
		}
		b.progress("==> %s", st.name)
		if waited, quiet := b.quiesce(90e9); !quiet {
			b.progress("  the functions were still busy after %s; measuring anyway", waited.Round(1e9))
		}
		if err := st.f(ctx); err != nil {
			b.progress("FAILED: %v", err)
			b.rows = append(b.rows, Row{Name: st.name, Goal: "-", Detail: "failed in this run: " + err.Error()})
		}
	}
}
