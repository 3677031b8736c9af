package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"github.com/go-sql-driver/mysql"

	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
)

// ledgerTrigger reads the ledger trigger's batch size and concurrency from the template, so the
// reference inserts in the batches the trigger hands the function, on as many connections.
func (b *bench) ledgerTrigger() (batch, workers int, err error) {
	f, ok := b.s.Template.Function("ledger")
	if !ok {
		return 0, 0, fmt.Errorf("no ledger function in template.yml")
	}
	tr, ok := f.Trigger("grants")
	if !ok {
		return 0, 0, fmt.Errorf("no grants trigger on the ledger")
	}
	ec, err := tr.EventBridge()
	if err != nil {
		return 0, 0, err
	}
	batch, workers = 1, 1
	if bw := ec.RunOptions; bw != nil && bw.BatchWindow != nil && bw.BatchWindow.CountBasedWindow > 0 {
		batch = bw.BatchWindow.CountBasedWindow
	}
	if ec.EventSinkConfig != nil && ec.EventSinkConfig.DeliveryOption.Concurrency > 0 {
		workers = ec.EventSinkConfig.DeliveryOption.Concurrency
	}
	return batch, workers, nil
}

// benchGrants are n grants of one campaign, as a claim publishes them, each of its own user and
// request (a unique key of claims), so every one is a new row.
func benchGrants(campaign, run string, n int) []domain.Claim {
	at := time.Now().UTC().Truncate(time.Millisecond)
	out := make([]domain.Claim, n)
	for i := range out {
		out[i] = domain.Claim{
			ID: fmt.Sprintf("bl%s-%08d", run, i), CampaignID: campaign, UserID: fmt.Sprintf("bl-u%07d", i),
			RequestID: fmt.Sprintf("r%s-%d", run, i), Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
			GrantedAt: at,
		}
	}
	return out
}

// ledgerRows: a backlog of grants on the grants topic drained by the ledger trigger into MariaDB,
// beside a bare client inserting the same rows into a copy of the claims table, in the trigger's batch
// size and on as many connections. The backlog is appended to the broker in-process (its Send, in
// batches of 1,000, faster than any drain), so the drain starts on the first batch and the figure is
// grants until the last one is recorded; the time the backlog took to append is in the detail.
func (b *bench) ledgerRows(ctx context.Context) error {
	if b.s.BrokerEngine == nil {
		return fmt.Errorf("the ledger row needs the broker emulator")
	}
	n := *ledgerGrants
	batch, workers, err := b.ledgerTrigger()
	if err != nil {
		return err
	}
	campaign, err := b.createCampaign(ctx, 1_000_000_000, 1)
	if err != nil {
		return err
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano()%0xfffff)
	grants := benchGrants(campaign, run, n)
	db, err := sql.Open("mysql", b.s.MySQLDSN)
	if err != nil {
		return err
	}
	defer db.Close()

	cpuBefore := b.cpuSnapshot(ctx)
	profPath := filepath.Join(b.out, "ledger-stack-cpu.pprof")
	pf, err := os.Create(profPath)
	if err != nil {
		return err
	}
	defer pf.Close()
	if err := pprof.StartCPUProfile(pf); err != nil {
		return err
	}
	profiling := true
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
	}()
	b.progress("  ledger: appending %d grants to the grants topic while the trigger (batch %d, %d in flight) drains them", n, batch, workers)
	t0 := time.Now()
	appendErr := make(chan error, 1)
	var appended time.Duration
	go func() {
		defer close(appendErr)
		for start := 0; start < n; start += 1000 {
			end := min(start+1000, n)
			in := make([]rocketmq.SendInput, 0, end-start)
			for _, c := range grants[start:end] {
				body, err := json.Marshal(c)
				if err != nil {
					appendErr <- err
					return
				}
				in = append(in, rocketmq.SendInput{ID: "m" + c.ID, Topic: "benefit-grants", Tag: mq.TagGrant, Keys: []string{c.ID}, Body: body,
					Type: v2.MessageType_NORMAL, BornAt: time.Now(), BornHost: "bench"})
			}
			if _, err := b.s.BrokerEngine.Send(in); err != nil {
				appendErr <- err
				return
			}
		}
		appended = time.Since(t0)
	}()
	// The campaign's issued count in MySQL grows by exactly the grants the ledger inserted.
	deadline := t0.Add(8 * time.Minute)
	lastReport := t0
	var issued int64
	for {
		if err := db.QueryRowContext(ctx, "SELECT issued FROM campaigns WHERE id = ?", campaign).Scan(&issued); err != nil {
			return err
		}
		if issued >= int64(n) {
			break
		}
		select {
		case err, ok := <-appendErr:
			if ok && err != nil {
				return fmt.Errorf("appending the backlog: %w", err)
			}
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ledger recorded %d of %d grants in %s", issued, n, time.Since(t0).Round(time.Second))
		}
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			b.progress("  ledger: %d of %d recorded after %s", issued, n, time.Since(t0).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Since(t0)
	pprof.StopCPUProfile()
	profiling = false
	cpu := b.cpuSnapshot(ctx).since(cpuBefore, drained.Seconds())
	b.progress("  ledger: CPU while draining: %s; the stack process's profile: %s", cpu, profPath)
	if out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=12", profPath).CombinedOutput(); err == nil {
		for _, l := range strings.Split(string(out), "\n")[min(4, len(strings.Split(string(out), "\n"))):] {
			if l != "" {
				fmt.Println("      " + l)
			}
		}
	}
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM claims WHERE campaign_id = ?", campaign).Scan(&rows); err != nil {
		return err
	}
	if rows != int64(n) || issued != int64(n) {
		return fmt.Errorf("the ledger recorded %d rows and issued %d, want %d", rows, issued, n)
	}
	ours := float64(n) / drained.Seconds()
	b.progress("  ledger: %d grants recorded in %s (%.0f grants/s; the backlog was appended in %s)", n, drained.Round(10*time.Millisecond), ours, appended.Round(10*time.Millisecond))

	refTime, err := b.bareInserts(ctx, grants, batch, workers)
	if err != nil {
		return err
	}
	ref := float64(n) / refTime.Seconds()
	b.progress("  bare client: %d rows in %s (%.0f rows/s), %d-row INSERTs on %d connections", n, refTime.Round(10*time.Millisecond), ref, batch, workers)
	r := ratio(ours, ref)
	b.rows = append(b.rows, Row{
		Name: fmt.Sprintf("ledger drain grants/s, a backlog of %d grants through the trigger into MariaDB vs batched INSERTs of the same rows by a bare client", n),
		Ours: num(ours), Reference: num(ref), Ratio: num(r), Goal: "ratio ≥ 0.7", Met: r >= 0.7,
		Detail: fmt.Sprintf("ours %s from the first append to the last grant recorded (backlog appended in %s; CPU %s); reference %s, %d-row INSERTs in a transaction each on %d connections into a copy of claims",
			drained.Round(10*time.Millisecond), appended.Round(10*time.Millisecond), cpu, refTime.Round(10*time.Millisecond), batch, workers),
	})
	// The backlog's rows would only slow the rows after this one.
	if _, err := db.ExecContext(ctx, "DELETE FROM claims WHERE campaign_id = ?", campaign); err != nil {
		b.progress("  ledger: could not delete the backlog's rows: %v", err)
	}
	return nil
}

// bareInserts writes the grants into bench_ref.claims (a copy of the claims table) as a bare client
// would: multi-row INSERTs of batch rows, one transaction each, on workers connections.
func (b *bench) bareInserts(ctx context.Context, grants []domain.Claim, batch, workers int) (time.Duration, error) {
	cfg, err := mysql.ParseDSN(b.s.MySQLDSN)
	if err != nil {
		return 0, err
	}
	src := cfg.DBName
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS bench_ref",
		"DROP TABLE IF EXISTS bench_ref.claims",
		"CREATE TABLE bench_ref.claims LIKE `" + src + "`.claims",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return 0, err
		}
	}
	defer admin.ExecContext(context.Background(), "DROP TABLE IF EXISTS bench_ref.claims")
	cfg.DBName = "bench_ref"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(workers)
	next := make(chan []domain.Claim)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	t0 := time.Now()
	for range workers {
		wg.Go(func() {
			for part := range next {
				q := "INSERT INTO claims (id, campaign_id, user_id, request_id, benefit_type, benefit_amount, cost_points, granted_at) VALUES " +
					strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?), ", len(part)), ", ")
				args := make([]any, 0, 8*len(part))
				for _, c := range part {
					args = append(args, c.ID, c.CampaignID, c.UserID, c.RequestID, string(c.Benefit.Type), c.Benefit.Amount, c.CostPoints, c.GrantedAt)
				}
				err := func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, q, args...); err != nil {
						tx.Rollback()
						return err
					}
					return tx.Commit()
				}()
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for start := 0; start < len(grants); start += batch {
		next <- grants[start:min(start+batch, len(grants))]
	}
	close(next)
	wg.Wait()
	return time.Since(t0), firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
