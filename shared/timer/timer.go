// Package timer holds the timer function's jobs. Each is safe to run twice at once or to be cut off
// half-way: every step is idempotent (claim ids are derived from (user, request), Redis applies behind
// a version fence, MySQL inserts are keyed), so the next run finishes what the last one started.
package timer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/obs"
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
	PendingOutbox(ctx context.Context, olderThan time.Duration, limit int) ([]domain.OutboxEntry, error)
	MarkOutboxSent(ctx context.Context, ids ...int64) error
	LiveCampaigns(ctx context.Context, now time.Time, grace time.Duration) ([]domain.CampaignRecord, error)
	Campaign(ctx context.Context, id string) (domain.CampaignRecord, error)
	ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error)
	IssuedAndRecorded(ctx context.Context, campaignID string, ids []string) (int64, map[string]bool, error)
	GrantCandidates(ctx context.Context, campaignID string, after domain.GrantCursor, limit int) ([]domain.GrantCandidate, domain.GrantCursor, error)
	Users(ctx context.Context, afterID string, limit int) ([]domain.UserRecord, error)
	CampaignClaims(ctx context.Context, campaignID string, afterID string, limit int) ([]domain.Claim, error)
	BackstopStore
}

// Cache is the Redis side of the jobs.
type Cache interface {
	Campaign(ctx context.Context, id string) (domain.CachedCampaign, error)
	ApplyCampaign(ctx context.Context, c domain.Campaign, dbIssued int64) (domain.ApplyResult, error)
	RepairCampaign(ctx context.Context, c domain.Campaign, issuedFloor, expectVersion int64) (domain.ApplyResult, error)
	ApplyUser(ctx context.Context, u domain.UserState) (domain.ApplyResult, error)
	User(ctx context.Context, id string) (domain.CachedUser, error)
	RestoreClaims(ctx context.Context, camp domain.Campaign, claims []domain.Claim) error
	Claim(ctx context.Context, in domain.ClaimInput) (domain.ClaimOutcome, error)
	SweepPending(ctx context.Context, campaignID string, olderThan time.Duration, now time.Time) (domain.SweepResult, error)
	Reservations(ctx context.Context, campaignID string) ([]domain.Reservation, error)
	Kept(ctx context.Context, campaignID string, rs []domain.Reservation) ([]domain.Reservation, error)
	ReadGrants(ctx context.Context, campaignID, afterStreamID string, count int64) ([]domain.StreamGrant, error)
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
	// The outbox relay (outbox.go).
	OutboxAge time.Duration // leave fresh outbox rows to the rules function's own publish

	// The grant replay and the sweep of half-done points claims (grantreplay.go).
	ReplayAge      time.Duration // leave fresh grants to the claim function's own publish
	PendingTimeout time.Duration // a points claim half-done for longer than this is resolved

	// Reconciliation (reconcile.go); ReconcileGrace also bounds the grant replay's campaigns.
	ReconcileGrace time.Duration // campaigns ended longer ago are left alone
	UserBudget     int           // users one reconcile run compares; the next run continues after them

	// Scheduled grants (scheduledgrants.go).
	GrantBudget int // most grants one run issues; the next run continues

	// The grant backstop (backstop.go).
	BackstopBudget time.Duration // a periodic session starts no receive after this (default 15s)
	// BackstopInvisible is how long a received grant stays invisible to the group (10s): a dead
	// session's grants come back after it, and a cache rebuild waits that long plus backstopSlack after
	// one. A batch takes milliseconds to write and acknowledge; 10 s is the least a RocketMQ 5 proxy
	// accepts (ProxyConfig.minInvisibleTimeMillsForRecv).
	BackstopInvisible time.Duration
	BackstopBatch     int // grants per receive (32)
	// BackstopReceivers is how many receive-write-acknowledge loops a session runs at once (4): a
	// receive returns at most 32 grants (the proxy's cap), and one loop drained about 700 a second.
	BackstopReceivers int

	// The cache rebuild's drain of the backstop (rebuild.go).
	DrainBudget   time.Duration // a rebuild's drain, and its wait for a dead session's hold (25s)
	DrainLockWait time.Duration // how long a drain waits for a periodic session to finish (20s)
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
		c.BackstopInvisible = 10 * time.Second
	}
	if c.BackstopBatch <= 0 {
		c.BackstopBatch = 32
	}
	if c.BackstopReceivers <= 0 {
		c.BackstopReceivers = 4
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
	return mq.PublishGrantWithin(ctx, j.pub.PublishGrant, c, grantPublishTimeout)
}
