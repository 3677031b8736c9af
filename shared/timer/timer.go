// Package timer holds the timer function's jobs. Each is safe to run twice at once or to be cut off
// half-way: every step is idempotent (claim ids are derived from (user, request), Redis applies behind
// a version fence, MySQL inserts are keyed), so the next run finishes what the last one started.
package timer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/obs"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Job names, equal to the trigger names in template.yml.
const (
	JobScheduledGrants = "scheduled-grants"
	JobOutboxRelay     = "outbox-relay"
	JobGrantReplay     = "grant-replay"
	JobReconcile       = "reconcile"
	JobCacheRebuild    = "cache-rebuild"
	JobGrantBackstop   = "grant-backstop"
)

// Store is the MySQL side of the jobs.
type Store interface {
	PendingOutbox(ctx context.Context, olderThan time.Duration, limit int) ([]mysqlstore.OutboxEntry, error)
	MarkOutboxSent(ctx context.Context, ids ...int64) error
	LiveCampaigns(ctx context.Context, now time.Time, grace time.Duration) ([]mysqlstore.CampaignRecord, error)
	Campaign(ctx context.Context, id string) (mysqlstore.CampaignRecord, error)
	ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error)
	IssuedAndRecorded(ctx context.Context, campaignID string, ids []string) (int64, map[string]bool, error)
	GrantCandidates(ctx context.Context, campaignID string, after mysqlstore.Cursor, limit int) ([]domain.GrantCandidate, mysqlstore.Cursor, error)
	Users(ctx context.Context, afterID string, limit int) ([]mysqlstore.UserRecord, error)
	CampaignClaims(ctx context.Context, campaignID string, afterID string, limit int) ([]domain.Claim, error)
	BackstopStore
}

// Cache is the Redis side of the jobs.
type Cache interface {
	Campaign(ctx context.Context, id string) (rediscache.CachedCampaign, error)
	ApplyCampaign(ctx context.Context, c domain.Campaign, dbIssued int64) (rediscache.ApplyResult, error)
	RepairCampaign(ctx context.Context, c domain.Campaign, issuedFloor, expectVersion int64) (rediscache.ApplyResult, error)
	ApplyUser(ctx context.Context, u rediscache.UserState) (rediscache.ApplyResult, error)
	User(ctx context.Context, id string) (rediscache.CachedUser, error)
	RestoreClaims(ctx context.Context, campaignID string, claims []domain.Claim) error
	Claim(ctx context.Context, in rediscache.ClaimInput) (rediscache.ClaimOutcome, error)
	SweepPending(ctx context.Context, campaignID string, olderThan time.Duration, now time.Time) (rediscache.SweepResult, error)
	ReadGrants(ctx context.Context, campaignID, afterStreamID string, count int64) ([]rediscache.StreamGrant, error)
	TrimGrants(ctx context.Context, campaignID, upToStreamID string) error
	Ready(ctx context.Context) (bool, error)
	MarkReady(ctx context.Context) error
}

// Publisher sends changes and grants.
type Publisher interface {
	PublishChange(ctx context.Context, ev mq.ChangeEvent) error
	PublishGrant(ctx context.Context, c domain.Claim) error
}

// Config tunes the jobs.
type Config struct {
	OutboxAge      time.Duration // leave fresh outbox rows to the rules function's own publish
	ReplayAge      time.Duration // leave fresh grants to the claim function's own publish
	PendingTimeout time.Duration // a points claim half-done for longer than this is resolved
	ReconcileGrace time.Duration // campaigns ended longer ago are left alone
	GrantBudget    int           // most grants one run issues; the next run continues
	UserBudget     int           // users one reconcile run compares; the next run continues after them

	// The grant backstop (backstop.go).
	BackstopBudget    time.Duration // a periodic session starts no receive after this (default 15s)
	BackstopInvisible time.Duration // how long a received grant stays invisible to the group (15s)
	BackstopBatch     int           // grants per receive (32)
	DrainBudget       time.Duration // a rebuild's drain, and its wait for a dead session's hold (25s)
	DrainLockWait     time.Duration // how long a drain waits for a periodic session to finish (20s)
	// DrainEmptyReceives is how many receives in a row must come back empty before a drain believes
	// the group is empty (1). A RocketMQ 5 proxy serves each receive from one broker of the topic, so
	// on a cluster of several brokers set it to their number.
	DrainEmptyReceives int
	// ClaimWindow is how long a grant read from Redis before the cache was lost may still be on its way
	// to the broker or MySQL: the claim function's timeout (10s); the timer's own jobs bound theirs
	// below it (grantPublishTimeout, replayWindow). A drain trusts "empty" only after it, since nothing
	// is decided on a cache that is not ready.
	ClaimWindow time.Duration
}

func (c *Config) defaults() {
	if c.UserBudget <= 0 {
		c.UserBudget = 5000
	}
	if c.OutboxAge <= 0 {
		c.OutboxAge = time.Second
	}
	if c.ReplayAge <= 0 {
		c.ReplayAge = 5 * time.Second
	}
	if c.PendingTimeout <= 0 {
		c.PendingTimeout = 30 * time.Second
	}
	if c.ReconcileGrace <= 0 {
		c.ReconcileGrace = 24 * time.Hour
	}
	if c.GrantBudget <= 0 {
		c.GrantBudget = 500
	}
	if c.BackstopBudget <= 0 {
		c.BackstopBudget = 15 * time.Second
	}
	if c.BackstopInvisible <= 0 {
		c.BackstopInvisible = 15 * time.Second
	}
	if c.BackstopBatch <= 0 {
		c.BackstopBatch = 32
	}
	if c.DrainBudget <= 0 {
		c.DrainBudget = 25 * time.Second
	}
	if c.DrainLockWait <= 0 {
		c.DrainLockWait = 20 * time.Second
	}
	if c.DrainEmptyReceives <= 0 {
		c.DrainEmptyReceives = 1
	}
	if c.ClaimWindow <= 0 {
		c.ClaimWindow = 10 * time.Second
	}
}

// Jobs runs the timer's work.
type Jobs struct {
	store Store
	cache Cache
	pub   Publisher
	src   GrantSource
	now   func() time.Time
	cfg   Config

	mu          sync.Mutex
	usersCursor string // where the next reconcile run continues through the users
}

// New builds the jobs; src is the grant backstop's consumer group (GrantBackstop and CacheRebuild fail
// without it).
func New(store Store, cache Cache, pub Publisher, src GrantSource, now func() time.Time, cfg Config) *Jobs {
	if now == nil {
		now = time.Now
	}
	cfg.defaults()
	return &Jobs{store: store, cache: cache, pub: pub, src: src, now: now, cfg: cfg}
}

// Fix is one thing a job found and what it did about it.
type Fix struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
	Drift  string `json:"drift"`
	Action string `json:"action"`
}

// Report says what a run did; the timer function returns it, so FC's logs and the local
// /_local/timers endpoint show it.
type Report struct {
	Job        string `json:"job"`
	Campaigns  int    `json:"campaigns,omitempty"`
	Published  int    `json:"published,omitempty"`
	Failed     int    `json:"failed,omitempty"`
	Granted    int    `json:"granted,omitempty"`
	Replayed   int    `json:"replayed,omitempty"`
	Trimmed    int    `json:"trimmed,omitempty"`
	Confirmed  int    `json:"pending_confirmed,omitempty"`
	Released   int    `json:"pending_released,omitempty"`
	Rebuilt    bool   `json:"rebuilt,omitempty"`
	Ready      bool   `json:"ready,omitempty"`
	Users      int    `json:"users,omitempty"`
	Received   int    `json:"backstop_received,omitempty"`
	Inserted   int    `json:"backstop_inserted,omitempty"`
	Fixed      []Fix  `json:"fixed,omitempty"`
	Note       string `json:"note,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// Run runs one job by name.
func (j *Jobs) Run(ctx context.Context, job string) (Report, error) {
	start := time.Now()
	var (
		r   Report
		err error
	)
	switch job {
	case JobScheduledGrants:
		r, err = j.ScheduledGrants(ctx)
	case JobOutboxRelay:
		r, err = j.OutboxRelay(ctx)
	case JobGrantReplay:
		r, err = j.GrantReplay(ctx)
	case JobReconcile:
		r, err = j.Reconcile(ctx)
	case JobCacheRebuild:
		r, err = j.CacheRebuild(ctx)
	case JobGrantBackstop:
		r, err = j.GrantBackstop(ctx)
	default:
		return Report{Job: job}, fmt.Errorf("unknown timer job %q", job)
	}
	r.Job = job
	r.DurationMS = time.Since(start).Milliseconds()
	return r, err
}

// Invocation is the FC event function. The job is the trigger's payload when set, else its name.
func (j *Jobs) Invocation(log *slog.Logger) func(context.Context, events.TimerEvent) (Report, error) {
	return func(ctx context.Context, ev events.TimerEvent) (Report, error) {
		ctx = obs.Invocation(ctx, log)
		job := ""
		if ev.Payload != nil && *ev.Payload != "" {
			job = *ev.Payload
		} else if ev.TriggerName != nil {
			job = *ev.TriggerName
		}
		r, err := j.Run(ctx, job)
		if err != nil {
			obs.Logger(ctx).Error("timer job failed", "job", job, "error", err.Error())
			return r, err
		}
		obs.Logger(ctx).Info("timer job done", "job", job, "report", r)
		return r, nil
	}
}

// A timer job that read a grant from Redis makes it durable outside Redis within bounded time, so that
// CacheRebuild's ClaimWindow (10 s by default) covers it as it covers a claim in flight: a grant read
// before Redis was lost reaches the broker or MySQL before the drain trusts "empty". Scheduled grants
// take at most grantPublishTimeout + grantRecordTimeout after their decision; the grant replay
// publishes what one scan found for at most replayWindow after the scan began, plus one publish.
const (
	grantPublishTimeout = 2 * time.Second
	grantRecordTimeout  = 2 * time.Second
	replayWindow        = 5 * time.Second
)

// publishGrant sends a grant, waiting at most grantPublishTimeout even when the client overstays its
// context; a send still running may yet land, a duplicate the ledger ignores.
func (j *Jobs) publishGrant(ctx context.Context, c domain.Claim) error {
	pctx, cancel := context.WithTimeout(ctx, grantPublishTimeout)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- j.pub.PublishGrant(pctx, c)
	}()
	select {
	case err := <-done:
		return err
	case <-pctx.Done():
		return fault.Retryable(fmt.Errorf("publishing grant %s: no answer within %s", c.ID, grantPublishTimeout))
	}
}

// OutboxRelay publishes committed changes whose publish never happened (a crash between commit and
// send, or a broker outage), then marks them sent.
func (j *Jobs) OutboxRelay(ctx context.Context) (Report, error) {
	var r Report
	entries, err := j.store.PendingOutbox(ctx, j.cfg.OutboxAge, 500)
	if err != nil {
		return r, err
	}
	var sent []int64
	var errs []error
	for _, e := range entries {
		if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: e.Entity, ID: e.EntityID, Version: e.Version}); err != nil {
			r.Failed++
			errs = append(errs, err)
			continue
		}
		sent = append(sent, e.ID)
	}
	if len(sent) > 0 {
		if err := j.store.MarkOutboxSent(ctx, sent...); err != nil {
			errs = append(errs, err)
		}
	}
	r.Published = len(sent)
	return r, errors.Join(errs...)
}

// streamScan is what the grant stream of one campaign holds beyond MySQL.
type streamScan struct {
	missing  []domain.Claim // granted in Redis, not in MySQL
	trimUpTo string         // the last stream id of the prefix MySQL already has
	trimmed  int
}

func (j *Jobs) scanGrants(ctx context.Context, campaignID string) (streamScan, error) {
	var s streamScan
	after := "0"
	prefix := true
	for {
		batch, err := j.cache.ReadGrants(ctx, campaignID, after, 500)
		if err != nil {
			return s, err
		}
		if len(batch) == 0 {
			return s, nil
		}
		ids := make([]string, len(batch))
		for i, g := range batch {
			ids[i] = g.Claim.ID
		}
		have, err := j.store.ExistingClaims(ctx, ids)
		if err != nil {
			return s, err
		}
		for _, g := range batch {
			if have[g.Claim.ID] {
				if prefix {
					s.trimUpTo = g.StreamID
					s.trimmed++
				}
				continue
			}
			prefix = false
			s.missing = append(s.missing, g.Claim)
		}
		after = batch[len(batch)-1].StreamID
	}
}

// GrantReplay sends the ledger every grant the Redis stream has and MySQL lacks (a claim whose publish
// failed), trims what MySQL has, and resolves points claims left half-done by a crash.
func (j *Jobs) GrantReplay(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	camps, err := j.store.LiveCampaigns(ctx, now, j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	r.Campaigns = len(camps)
	var errs []error
	for _, rec := range camps {
		id := rec.Campaign.ID
		sw, err := j.cache.SweepPending(ctx, id, j.cfg.PendingTimeout, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", id, err))
		}
		r.Confirmed += sw.Confirmed
		r.Released += sw.Released
		scanned := time.Now()
		scan, err := j.scanGrants(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("scan %s: %w", id, err))
			continue
		}
		for _, c := range scan.missing {
			if now.Sub(c.GrantedAt) < j.cfg.ReplayAge {
				continue
			}
			if time.Since(scanned) > replayWindow {
				r.Note = "replay window spent; the next run sends the rest"
				break
			}
			if err := j.publishGrant(ctx, c); err != nil {
				r.Failed++
				errs = append(errs, err)
				continue
			}
			r.Replayed++
		}
		if scan.trimUpTo != "" {
			if err := j.cache.TrimGrants(ctx, id, scan.trimUpTo); err != nil {
				errs = append(errs, fmt.Errorf("trim %s: %w", id, err))
			} else {
				r.Trimmed += scan.trimmed
			}
		}
	}
	return r, errors.Join(errs...)
}

// Reconcile compares every live campaign in MySQL and Redis, republishes what drifted and reports it.
func (j *Jobs) Reconcile(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	ready, err := j.cache.Ready(ctx)
	if err != nil {
		return r, err
	}
	if !ready {
		r.Note = "cache is not ready; cache-rebuild restores it"
		return r, nil
	}
	camps, err := j.store.LiveCampaigns(ctx, now, j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	r.Campaigns = len(camps)
	var errs []error
	for _, listed := range camps {
		id := listed.Campaign.ID
		cc, err := j.cache.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The stream outlives an evicted campaign entry, so grants on their way to MySQL are counted
		// whether or not the entry is there.
		scan, err := j.scanGrants(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec, err := j.store.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// What the cache has issued that MySQL lacks, and MySQL's count, from one snapshot: a grant the
		// ledger writes between the scan and the count is then counted once. Counted twice it raised
		// issued above the truth for good (a repair never lowers it): stock left unsold, and a cache
		// that never again equals MySQL (found by the fault suite under Redis latency).
		missing := make([]string, len(scan.missing))
		for i, g := range scan.missing {
			missing[i] = g.ID
		}
		issued, recorded, err := j.store.IssuedAndRecorded(ctx, id, missing)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec.Issued = issued
		var stillMissing []domain.Claim
		for _, g := range scan.missing {
			if !recorded[g.ID] {
				stillMissing = append(stillMissing, g)
			}
		}
		scan.missing = stillMissing
		c := rec.Campaign
		inFlight := int64(len(scan.missing)) + cc.Pending
		drift := domain.Reconcile(
			domain.DBView{Version: c.Version, Stock: c.Stock, Issued: rec.Issued},
			domain.CacheView{Present: cc.Present, Version: cc.Version, Stock: cc.Stock, Issued: cc.Issued},
			inFlight)
		fix := Fix{Entity: mq.EntityCampaign, ID: c.ID, Drift: string(drift)}
		switch drift {
		case domain.DriftNone:
			continue
		case domain.DriftStaleVersion:
			fix.Action = "republished"
			if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: mq.EntityCampaign, ID: c.ID, Version: c.Version}); err != nil {
				fix.Action = "republish failed: " + err.Error()
				errs = append(errs, err)
			}
		case domain.DriftMissing:
			// The rest of the cache is there (ready is set), so this campaign alone was evicted: rebuild
			// it with the grants still in flight counted and held, or its stock would be sold twice.
			fix.Action = "rebuilt"
			if applied, err := j.rebuildCampaign(ctx, rec, scan.missing, cc.Pending); err != nil {
				fix.Action = "rebuild failed: " + err.Error()
				errs = append(errs, err)
			} else if !applied {
				fix.Action = "skipped: the entry reappeared meanwhile"
			}
		case domain.DriftAheadVersion, domain.DriftStockMismatch, domain.DriftIssuedBehind:
			fix.Action = "repaired"
			res, err := j.cache.RepairCampaign(ctx, c, rec.Issued+inFlight, cc.Version)
			switch {
			case err != nil:
				fix.Action = "repair failed: " + err.Error()
				errs = append(errs, err)
			case !res.Applied:
				fix.Action = "skipped: the cache changed meanwhile"
			}
		default:
			fix.Action = "reported"
		}
		r.Fixed = append(r.Fixed, fix)
	}
	fixes, users, err := j.reconcileUsers(ctx)
	r.Users = users
	r.Fixed = append(r.Fixed, fixes...)
	if err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// reconcileUsers compares up to UserBudget users' versions in MySQL and Redis, continuing where the
// last run stopped, and republishes those the cache is behind on: a user change whose message ended
// in the dead-letter queue would otherwise never reach the cache.
func (j *Jobs) reconcileUsers(ctx context.Context) ([]Fix, int, error) {
	j.mu.Lock()
	after := j.usersCursor
	j.mu.Unlock()
	var fixes []Fix
	seen := 0
	for seen < j.cfg.UserBudget {
		page, err := j.store.Users(ctx, after, min(500, j.cfg.UserBudget-seen))
		if err != nil {
			return fixes, seen, err
		}
		if len(page) == 0 {
			after = "" // wrapped around: the next run starts again from the first user
			break
		}
		for _, u := range page {
			seen++
			after = u.User.ID
			cu, err := j.cache.User(ctx, u.User.ID)
			if err != nil {
				return fixes, seen, err
			}
			if cu.Present && cu.Version >= u.User.Version {
				continue
			}
			fix := Fix{Entity: mq.EntityUser, ID: u.User.ID, Drift: string(domain.DriftStaleVersion), Action: "republished"}
			if !cu.Present {
				fix.Drift = string(domain.DriftMissing)
			}
			if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: mq.EntityUser, ID: u.User.ID, Version: u.User.Version}); err != nil {
				fix.Action = "republish failed: " + err.Error()
				fixes = append(fixes, fix)
				return fixes, seen, err
			}
			fixes = append(fixes, fix)
		}
	}
	j.mu.Lock()
	j.usersCursor = after
	j.mu.Unlock()
	return fixes, seen, nil
}

// rebuildCampaign restores one absent campaign entry from MySQL plus what is known to be on its way
// there: grants in the Redis stream that the ledger has not written (inFlight) and reservations
// awaiting a debit. It writes only while the entry is still absent.
func (j *Jobs) rebuildCampaign(ctx context.Context, rec mysqlstore.CampaignRecord, inFlight []domain.Claim, pending int64) (bool, error) {
	after := ""
	seen := map[string]bool{}
	var all []domain.Claim
	for {
		page, err := j.store.CampaignClaims(ctx, rec.Campaign.ID, after, 1000)
		if err != nil {
			return false, err
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			seen[c.ID] = true
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	for _, c := range inFlight {
		if !seen[c.ID] { // written by the ledger since the scan: already in the MySQL list
			all = append(all, c)
		}
	}
	// Held counts and claim records come back before stock opens, so a user who already holds the
	// limit cannot claim again and a retried request gets its original answer.
	if err := j.cache.RestoreClaims(ctx, rec.Campaign.ID, all); err != nil {
		return false, err
	}
	// Count the distinct claims, not MySQL's count plus the stream's: a streamed grant the ledger wrote
	// after the scan is in both.
	res, err := j.cache.RepairCampaign(ctx, rec.Campaign, int64(len(all))+pending, 0)
	return res.Applied, err
}

// CacheRebuild restores a cache that lost its data (Redis restarted empty): claims answer 503 until it
// is done. It first drains the grant backstop's group to empty (backstop.go), so every grant ever
// acknowledged is in MySQL and stock is never computed from a partial count; a ledger stuck in retries
// delays nothing and fakes nothing. Then campaigns (with held counts and claim records) and users are
// restored and the cache is marked ready.
func (j *Jobs) CacheRebuild(ctx context.Context) (Report, error) {
	var r Report
	ready, err := j.cache.Ready(ctx)
	if err != nil {
		return r, err
	}
	if ready {
		r.Ready = true
		return r, nil
	}
	// Claims decided before the loss may still be publishing; before any claim was possible, none is.
	window := time.Duration(0)
	may, err := j.store.MayHaveGranted(ctx)
	if err != nil {
		return r, err
	}
	if may {
		window = j.cfg.ClaimWindow
	}
	s, err := j.backstop(ctx, session{kind: mysqlstore.BackstopDrain, lockWait: j.cfg.DrainLockWait, budget: j.cfg.DrainBudget,
		emptyAfter: window, emptyReceives: j.cfg.DrainEmptyReceives})
	r.Received, r.Inserted = s.received, s.inserted
	if err != nil {
		return r, err
	}
	if !s.drained {
		r.Note = s.note
		if r.Note == "" {
			r.Note = "the grant backstop is still draining; the next run continues"
		}
		return r, nil
	}
	camps, err := j.store.LiveCampaigns(ctx, j.now(), j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	for _, rec := range camps {
		if _, err := j.rebuildCampaign(ctx, rec, nil, 0); err != nil {
			return r, fmt.Errorf("rebuild campaign %s: %w", rec.Campaign.ID, err)
		}
		r.Campaigns++
	}
	after := ""
	for {
		users, err := j.store.Users(ctx, after, 1000)
		if err != nil {
			return r, err
		}
		if len(users) == 0 {
			break
		}
		for _, u := range users {
			if _, err := j.cache.ApplyUser(ctx, rediscache.UserState{
				ID: u.User.ID, RegisteredAt: u.User.RegisteredAt, Member: u.User.Member,
				Credits: u.Credited, Debits: u.Debited, Version: u.User.Version, Restore: true,
			}); err != nil {
				return r, fmt.Errorf("rebuild user %s: %w", u.User.ID, err)
			}
			r.Users++
		}
		after = users[len(users)-1].User.ID
	}
	if err := j.cache.MarkReady(ctx); err != nil {
		return r, err
	}
	r.Rebuilt, r.Ready = true, true
	return r, nil
}

// ScheduledGrants hands out `mode: grant` campaigns that are due: one unit to each eligible user,
// oldest registration first, until stock runs out. Redis decides each unit atomically with the same
// script as claims, and the claim id is derived from (user, campaign), so overlapping or repeated runs
// never grant a user twice nor more than stock.
func (j *Jobs) ScheduledGrants(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	camps, err := j.store.LiveCampaigns(ctx, now, 0)
	if err != nil {
		return r, err
	}
	budget := j.cfg.GrantBudget
	var errs []error
	for _, rec := range camps {
		c := rec.Campaign
		if !domain.GrantDue(c, now) || budget <= 0 {
			continue
		}
		r.Campaigns++
		cc, err := j.cache.Campaign(ctx, c.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !cc.Present || cc.Version < c.Version {
			r.Note = "a due campaign is not in the cache yet; the next run grants it"
			continue
		}
		remaining := cc.Remaining
		var cursor mysqlstore.Cursor
	pages:
		for remaining > 0 && budget > 0 {
			cands, next, err := j.store.GrantCandidates(ctx, c.ID, cursor, 500)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if len(cands) == 0 {
				break
			}
			for _, userID := range domain.SelectGrantees(c, cands, remaining, now) {
				if budget <= 0 {
					break pages
				}
				out, err := j.cache.Claim(ctx, rediscache.ClaimInput{
					UserID: userID, CampaignID: c.ID, RequestID: domain.GrantRequestID(c.ID), Now: now, By: domain.ByGrant,
				})
				if err != nil {
					errs = append(errs, err)
					break pages
				}
				switch out.Code {
				case "":
					if out.Replayed {
						continue
					}
					budget--
					remaining--
					r.Granted++
					// As a claim: durable outside Redis before it counts, in MySQL when the broker fails.
					if err := j.publishGrant(ctx, out.Claim); err != nil {
						rctx, cancel := context.WithTimeout(ctx, grantRecordTimeout)
						_, err := j.store.RecordClaims(rctx, []domain.Claim{out.Claim})
						cancel()
						if err != nil {
							r.Failed++ // only in the Redis stream; grant-replay sends it while Redis keeps it
						}
					}
				case domain.CodeSoldOut, domain.CodeEnded, domain.CodePaused, domain.CodeNotClaimable:
					break pages
				}
			}
			cursor = next
		}
	}
	return r, errors.Join(errs...)
}
