package timer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/timer"
	"github.com/benefit-issuance/benefits/shared/wiring"
	"github.com/benefit-issuance/benefits/shared/wiring/mqwiring"
)

const grantsTopic = "benefit-grants"

type broker struct {
	addr string
	pub  *rmqclient.Publisher
}

// withBroker starts the local RocketMQ broker for the test, a grants publisher (the claim function's)
// and the backstop's consumer group, which the fixture's jobs then use. The two minimums a stock proxy
// enforces (10 s invisible, 5 s long poll) are lowered so short test sessions are not refused.
func (f *fixture) withBroker() *broker {
	f.t.Helper()
	dir := f.t.TempDir()
	rmqclient.ConfigureClientLogging(dir)
	b, err := rocketmq.New(rocketmq.Config{MinInvisible: 100 * time.Millisecond, MinLongPolling: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	srv, err := rocketmq.Listen(b, "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { srv.Close(); b.Close() })
	// Started as the functions start it (mqwiring.Publisher): a start that fails for a moment is tried
	// again. The RocketMQ Go client 5.1.4 can fail one ("marshaling TelemetryCommand: size mismatch",
	// its settings written while its telemetry stream marshals them, the race `go test -race` reports
	// upstream), and a fixture that gave up on it failed make test once in CI.
	pub, err := wiring.RetryStartUp("rocketmq producer", func() (*rmqclient.Publisher, error) {
		return rmqclient.NewPublisher(rmqclient.Config{Endpoint: srv.Addr(), GrantsTopic: grantsTopic, ChangesTopic: "benefit-rule-changes", LogDir: dir})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = pub.Close() })
	f.src = f.consumer(srv.Addr(), mqwiring.DefaultBackstopGroup)
	return &broker{addr: srv.Addr(), pub: pub}
}

func (f *fixture) consumer(addr, group string) *mqwiring.GrantConsumer {
	f.t.Helper()
	c, err := wiring.RetryStartUp("rocketmq backstop consumer", func() (*mqwiring.GrantConsumer, error) {
		return mqwiring.NewGrantConsumer(mqwiring.BackstopConfig{Endpoint: addr, Group: group, Topic: grantsTopic, Await: 100 * time.Millisecond})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

// claimAndPublish is the claim function's path: Redis decides, the grant is published, the user is
// told yes.
func (f *fixture) claimAndPublish(b *broker, user, campaign, request string) domain.Claim {
	f.t.Helper()
	out := f.claim(user, campaign, request, t0)
	if out.Code != "" || out.Replayed {
		f.t.Fatalf("%s/%s: %+v", user, request, out)
	}
	if err := b.pub.PublishGrant(context.Background(), out.Claim); err != nil {
		f.t.Fatal(err)
	}
	return out.Claim
}

func (f *fixture) issued(campaign string) int64 {
	return f.count("SELECT issued FROM campaigns WHERE id = ?", campaign)
}

// The case: Redis is lost while the ledger cannot get grants into MySQL. The old rebuild judged
// "the ledger has drained" from MySQL's issued counts holding still for a quiet period; a stalled
// ledger holds them still, so it rebuilt from a partial MySQL: stock sold twice, per-user limits
// forgotten. The backstop drain cannot be fooled: it reads the grants themselves from its own group.
func TestCacheRebuildWhileTheLedgerIsStalled(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.withBroker()
	f.campaign("hot", true, func(c *domain.Campaign) { c.Stock, c.PerUserLimit = 3, 1 })
	var told []domain.Claim
	for _, u := range []string{"alice", "bob", "carol"} {
		told = append(told, f.claimAndPublish(b, u, "hot", "r1"))
	}
	// The ledger wrote alice's grant, then got stuck: its group holds every grant in retries.
	if _, err := f.store.RecordClaims(ctx, told[:1]); err != nil {
		t.Fatal(err)
	}
	ledgerGroup := f.consumer(b.addr, "GID_benefit_ledger")
	stuck, err := ledgerGroup.Receive(ctx, 32, time.Minute)
	if err != nil || len(stuck) != 3 {
		t.Fatalf("the ledger's group holds %d grants (%v), want all 3", len(stuck), err)
	}
	// What the old heuristic saw: MySQL's issued count holding still over its quiet period. It would
	// have called the ledger drained and rebuilt "hot" with 1 issued of 3: 2 units sold again, and bob
	// and carol free to claim past their limit.
	const quiet = 300 * time.Millisecond
	before := f.issued("hot")
	time.Sleep(quiet)
	if after := f.issued("hot"); after != before || after != 1 {
		t.Fatalf("issued %d then %d: the stalled ledger should hold MySQL still at 1", before, after)
	}
	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	j := f.jobs(t0, timer.Config{ClaimWindow: quiet, BackstopInvisible: 2 * time.Second})
	r, err := j.Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || !r.Ready || r.Received != 3 || r.Inserted != 2 {
		t.Fatalf("rebuild: %+v %v", r, err)
	}
	if n := f.issued("hot"); n != 3 {
		t.Fatalf("MySQL issued %d after the drain, want 3", n)
	}
	for _, c := range told {
		if f.count("SELECT COUNT(*) FROM claims WHERE id = ?", c.ID) != 1 {
			t.Fatalf("claim %s (%s) not in MySQL", c.ID, c.UserID)
		}
	}
	if cc, _ := f.cache.Campaign(ctx, "hot"); cc.Issued != 3 || cc.Remaining != 0 {
		t.Fatalf("rebuilt cache: %+v, want 3 issued, 0 remaining", cc)
	}
	if out := f.claim("dave", "hot", "r1", t0); out.Code != domain.CodeSoldOut {
		t.Fatalf("dave after the rebuild: %+v, want sold_out", out)
	}
	if out := f.claim("bob", "hot", "r2", t0); out.Code != domain.CodeLimitReached {
		t.Fatalf("bob's second request: %+v, want limit_reached", out)
	}
	if out := f.claim("carol", "hot", "r1", t0); out.Code != "" || !out.Replayed || out.Claim.ID != told[2].ID {
		t.Fatalf("carol's retry: %+v, want her claim replayed", out)
	}
	// The ledger, unstuck, finds everything written: nothing counted twice.
	var msgs []domain.Claim
	for _, d := range stuck {
		c, err := mq.DecodeGrant(d.Body)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, c)
	}
	if res, err := f.store.RecordClaims(ctx, msgs); err != nil || res.Inserted != 0 || f.issued("hot") != 3 {
		t.Fatalf("late ledger: %+v %v, issued %d", res, err, f.issued("hot"))
	}
}

// The periodic session writes what MySQL lacks and acknowledges everything, so its group stays near
// empty and a rebuild's drain is short.
func TestGrantBackstopWritesWhatTheLedgerLacks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.withBroker()
	f.campaign("c", true, func(c *domain.Campaign) { c.Stock = 10 })
	f.user("payer", t0.Add(-time.Hour), 100)
	f.campaign("paid", true, func(c *domain.Campaign) { c.Stock, c.CostPoints = 10, 40 })
	a := f.claimAndPublish(b, "alice", "c", "r1")
	f.claimAndPublish(b, "bob", "c", "r1")
	// A paid grant: the backstop's write debits exactly as the ledger's would.
	out := f.claim("payer", "paid", "p1", t0)
	if out.Code != "" {
		t.Fatalf("paid claim: %+v", out)
	}
	if err := b.pub.PublishGrant(ctx, out.Claim); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.RecordClaims(ctx, []domain.Claim{a}); err != nil {
		t.Fatal(err)
	}
	j := f.jobs(t0, timer.Config{BackstopInvisible: 2 * time.Second, BackstopBudget: 10 * time.Second})
	r, err := j.Run(ctx, timer.JobGrantBackstop)
	if err != nil || r.Received != 3 || r.Inserted != 2 || r.Note != "" {
		t.Fatalf("backstop: %+v %v", r, err)
	}
	if f.issued("c") != 2 || f.issued("paid") != 1 || f.count("SELECT points_debited FROM users WHERE id = 'payer'") != 40 {
		t.Fatal("MySQL after the backstop: issued or debits wrong")
	}
	if r, err := j.Run(ctx, timer.JobGrantBackstop); err != nil || r.Received != 0 {
		t.Fatalf("second run: %+v %v, want nothing left in the group", r, err)
	}
	if n := f.count("SELECT COUNT(*) FROM grant_backstop_runs WHERE finished_at IS NULL"); n != 0 {
		t.Fatalf("%d runs left unfinished", n)
	}
	// A session that cannot write leaves its run unfinished, and its grants come back.
	f.claimAndPublish(b, "carol", "c", "r1")
	broken := &failingRecords{Store: f.store}
	jb := timer.New(broken, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{BackstopInvisible: time.Second, BackstopBudget: 10 * time.Second})
	if _, err := jb.Run(ctx, timer.JobGrantBackstop); err == nil {
		t.Fatal("a backstop that cannot write reported success")
	}
	if n := f.count("SELECT COUNT(*) FROM grant_backstop_runs WHERE finished_at IS NULL"); n != 1 {
		t.Fatalf("%d unfinished runs, want the failed one", n)
	}
	time.Sleep(time.Second)
	if r, err := j.Run(ctx, timer.JobGrantBackstop); err != nil || r.Received != 1 || r.Inserted != 1 || f.issued("c") != 3 {
		t.Fatalf("after the failure: %+v %v, issued %d", r, err, f.issued("c"))
	}
}

type failingRecords struct{ *mysqlstore.Store }

func (failingRecords) RecordClaims(context.Context, []domain.Claim) (mysqlstore.RecordResult, error) {
	return mysqlstore.RecordResult{}, fault.Retryable(errors.New("mysql: connection refused"))
}

// A session that died holding grants invisible: its group answers "empty" although grants are there.
// The drain waits out the dead session's hold before it believes the group, and so finds them.
func TestDrainWaitsOutADeadSessionsHold(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.withBroker()
	f.campaign("c", true, func(c *domain.Campaign) { c.Stock = 10 })
	g := f.claimAndPublish(b, "alice", "c", "r1")
	// The dead session: it recorded its start, received the grant (invisible 5 s) and vanished.
	const invisible = 5 * time.Second
	if _, err := f.store.StartBackstopRun(ctx, mysqlstore.BackstopSession, invisible+500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got, err := f.src.Receive(ctx, 32, invisible); err != nil || len(got) != 1 {
		t.Fatalf("dead session's receive: %d %v", len(got), err)
	}
	if got, err := f.src.Receive(ctx, 32, invisible); err != nil || len(got) != 0 {
		t.Fatalf("the group should look empty while the grant is held: %d %v", len(got), err)
	}
	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	j := f.jobs(t0, timer.Config{ClaimWindow: 100 * time.Millisecond, DrainBudget: 10 * time.Second, BackstopInvisible: 2 * time.Second})
	r, err := j.Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || r.Received != 1 || r.Inserted != 1 {
		t.Fatalf("rebuild: %+v %v", r, err)
	}
	if f.count("SELECT COUNT(*) FROM claims WHERE id = ?", g.ID) != 1 {
		t.Fatal("the held grant is not in MySQL")
	}
	if cc, _ := f.cache.Campaign(ctx, "c"); cc.Issued != 1 || cc.Remaining != 9 {
		t.Fatalf("rebuilt cache: %+v", cc)
	}
	// A hold longer than the drain's budget: the rebuild says so and leaves the cache closed.
	if err := f.cache.ClearReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.StartBackstopRun(ctx, mysqlstore.BackstopSession, time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, err := j.Run(ctx, timer.JobCacheRebuild); err != nil || r.Rebuilt || r.Ready || r.Note == "" {
		t.Fatalf("rebuild under a long hold: %+v %v", r, err)
	}
	if ready, _ := f.cache.Ready(ctx); ready {
		t.Fatal("cache marked ready under a dead session's hold")
	}
}

// Only one session at a time: a periodic run finds the lock taken and leaves.
func TestBackstopSessionsExcludeEachOther(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.withBroker()
	lock, err := f.store.LockBackstop(ctx, 0)
	if err != nil || lock == nil {
		t.Fatalf("lock: %v %v", lock, err)
	}
	r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobGrantBackstop)
	if err != nil || r.Note == "" || r.Received != 0 {
		t.Fatalf("backstop while locked: %+v %v", r, err)
	}
	lock.Release()
	if r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobGrantBackstop); err != nil || r.Note != "" {
		t.Fatalf("backstop after release: %+v %v", r, err)
	}
}

// twoBrokers serves receives round-robin from two brokers' queues, as a RocketMQ 5 proxy serves each
// receive from one broker of the topic; a received message is invisible until acknowledged (its
// invisible time never runs out here), and an acknowledged message is gone.
type twoBrokers struct {
	mu       sync.Mutex
	queues   [2][][]byte
	next     int
	inFlight map[string]bool
}

func (b *twoBrokers) Receive(_ context.Context, max int, _ time.Duration) ([]timer.GrantDelivery, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inFlight == nil {
		b.inFlight = map[string]bool{}
	}
	q := b.next
	b.next = 1 - b.next
	var out []timer.GrantDelivery
	for i, body := range b.queues[q] {
		id := fmt.Sprint(q, "-", i)
		if len(out) == max {
			break
		}
		if body == nil || b.inFlight[id] {
			continue
		}
		b.inFlight[id] = true
		out = append(out, timer.GrantDelivery{ID: id, Body: body, Ack: func(context.Context) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.queues[q][i] = nil
			delete(b.inFlight, id)
			return nil
		}})
	}
	return out, nil
}

// One empty receive says nothing about the other brokers: the drain needs as many empty receives in a
// row as brokers serve the topic.
func TestDrainNeedsAnEmptyReceivePerBroker(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("c", true, func(c *domain.Campaign) { c.Stock = 10 })
	g := f.claim("alice", "c", "r1", t0)
	body, err := json.Marshal(g.Claim)
	if err != nil {
		t.Fatal(err)
	}
	src := &twoBrokers{}
	src.queues[1] = [][]byte{body}
	f.src = src
	if err := f.cache.ClearReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Believing the first empty answer misses the grant on the second broker (one receiver, so that
	// the empty answer comes first).
	r, err := f.jobs(t0, timer.Config{ClaimWindow: time.Millisecond, BackstopReceivers: 1}).Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || r.Received != 0 || f.issued("c") != 0 {
		t.Fatalf("rebuild with one empty receive: %+v %v, issued %d", r, err, f.issued("c"))
	}
	if err := f.cache.ClearReady(ctx); err != nil {
		t.Fatal(err)
	}
	src.next = 0
	r, err = f.jobs(t0, timer.Config{ClaimWindow: time.Millisecond, DrainEmptyReceives: 2}).Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || r.Received != 1 || r.Inserted != 1 || f.issued("c") != 1 {
		t.Fatalf("rebuild with two: %+v %v, issued %d", r, err, f.issued("c"))
	}
	if cc, _ := f.cache.Campaign(ctx, "c"); cc.Issued != 1 {
		t.Fatalf("rebuilt cache: %+v", cc)
	}
}

// A claim that finds the cache lost wakes the rebuild through the grant-starts trigger: the wake runs
// it at once, and fails (so the trigger retries within seconds) for as long as the rebuild cannot
// finish.
func TestACacheRebuildWakeRunsTheRebuildAndFailsUntilItIsDone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.withBroker()
	f.campaign("c", true, nil)
	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	wake := mqhandler.Message{ID: "w1", Topic: "benefit-grant-starts", Tag: mq.TagCacheRebuild, Body: []byte(`{"job":"cache-rebuild"}`)}
	starts := timer.NewGrantStarts(f.jobs(t0, timer.Config{ClaimWindow: 100 * time.Millisecond, DrainBudget: 2 * time.Second}), f.mq, domain.GrantStartPlan{})

	// A backstop session that died holding grants longer than the drain may wait: not done yet.
	if _, err := f.store.StartBackstopRun(ctx, domain.BackstopSession, time.Hour); err != nil {
		t.Fatal(err)
	}
	err := starts.Handle(ctx, wake)
	if err == nil || !fault.IsRetryable(err) {
		t.Fatalf("wake while the rebuild cannot finish: %v, want a retryable error", err)
	}
	if ready, _ := f.cache.Ready(ctx); ready {
		t.Fatal("the cache was marked ready by a rebuild that could not drain")
	}

	if _, err := f.store.DB().ExecContext(ctx, "DELETE FROM grant_backstop_runs"); err != nil {
		t.Fatal(err)
	}
	if err := starts.Handle(ctx, wake); err != nil {
		t.Fatalf("wake: %v", err)
	}
	if ready, _ := f.cache.Ready(ctx); !ready {
		t.Fatal("the wake did not rebuild the cache")
	}
	if cc, _ := f.cache.Campaign(ctx, "c"); !cc.Present || cc.Remaining != 100 {
		t.Fatalf("rebuilt campaign %+v, want it back with its stock", cc)
	}
}
