package timer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// GrantStartPublisher sends a grant start again when its campaign starts beyond one delay's reach.
type GrantStartPublisher interface {
	PublishGrantStart(ctx context.Context, g mq.GrantStart, deliverAt time.Time) error
}

// GrantStarts runs the scheduled grants when a grant campaign's delay message arrives at its
// starts_at, so the campaign starts on time; FC's timer steps whole minutes at best, and the
// scheduled-grants timer stays as the safety net for a message that was never sent.
type GrantStarts struct {
	jobs *Jobs
	pub  GrantStartPublisher
	plan domain.GrantStartPlan
}

// NewGrantStarts handles grant starts with jobs' store and clock. A zero plan is the default one.
func NewGrantStarts(jobs *Jobs, pub GrantStartPublisher, plan domain.GrantStartPlan) *GrantStarts {
	if plan == (domain.GrantStartPlan{}) {
		plan = domain.DefaultGrantStartPlan()
	}
	return &GrantStarts{jobs: jobs, pub: pub, plan: plan}
}

// Handle acts on one grant-start message as domain.GrantStartPlan.Next decides, and on a claim's wake
// of the cache rebuild (mq.TagCacheRebuild) by running it.
func (g *GrantStarts) Handle(ctx context.Context, msg mqhandler.Message) error {
	if msg.Tag == mq.TagCacheRebuild {
		return g.rebuild(ctx)
	}
	gs, err := mq.DecodeGrantStart(msg.Body)
	if err != nil {
		return fault.Permanent(err)
	}
	rec, err := g.jobs.store.Campaign(ctx, gs.CampaignID)
	if domain.CodeOf(err) == domain.CodeCampaignNotFound {
		return fault.Permanent(err)
	}
	if err != nil {
		return err
	}
	log := obs.Logger(ctx).With("campaign_id", gs.CampaignID, "version", gs.Version)
	action, at := g.plan.Next(rec.Campaign, gs.Version, g.jobs.now())
	switch action {
	case domain.GrantStartDrop:
		log.Info("grant start dropped: the campaign was written since, or will not start", "campaign_version", rec.Campaign.Version)
		return nil
	case domain.GrantStartHop:
		log.Info("grant start beyond one delay; sent again", "deliver_at", at)
		return g.pub.PublishGrantStart(ctx, gs, at)
	case domain.GrantStartWait:
		select {
		case <-ctx.Done():
			return fault.Retryable(ctx.Err())
		case <-time.After(at.Sub(g.jobs.now())):
		}
	}
	r, err := g.jobs.Run(ctx, JobScheduledGrants)
	log.Info("grant start ran the scheduled grants", "report", r)
	return err
}

// rebuild runs the cache rebuild for a wake. Until the cache is ready again the wake fails as
// retryable, so the trigger tries again within seconds (its backoff starts at one) instead of leaving
// claims unavailable until the rebuild's minute timer.
func (g *GrantStarts) rebuild(ctx context.Context) error {
	r, err := g.jobs.Run(ctx, JobCacheRebuild)
	obs.Logger(ctx).Info("a claim woke the cache rebuild", "report", r)
	if err != nil {
		return err
	}
	if !r.Ready {
		return fault.Retryable(fmt.Errorf("cache rebuild not finished: %s", r.Note))
	}
	return nil
}

// Handler is Handle behind mqhandler's recoverer and a short in-process retry. A grant start that can
// never be handled is logged and acknowledged rather than parked: the minute timer grants the campaign
// anyway, at most a minute late.
func (g *GrantStarts) Handler() mqhandler.Handler {
	return mqhandler.Chain(g.Handle,
		mqhandler.Poison(func(ctx context.Context, msg mqhandler.Message, cause error) error {
			obs.Logger(ctx).Error("grant start cannot be handled; the scheduled-grants timer covers it", "message_id", msg.ID, "body", string(msg.Body), "error", cause.Error())
			return nil
		}),
		mqhandler.Retry{MaxRetries: 2, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Jitter: 0.2}.Middleware(),
		mqhandler.Recoverer())
}

// Entry is the timer function's FC event function. Its timer triggers send a TimerEvent naming the
// job; its grant-starts trigger sends RocketMQ CloudEvents (one, or a batch), each a grant start.
func Entry(jobs *Jobs, starts *GrantStarts, log *slog.Logger) func(context.Context, []byte) (any, error) {
	onTimer := jobs.Invocation(log)
	onMessages := mqhandler.Invocation(starts.Handler(), log)
	return func(ctx context.Context, payload []byte) (any, error) {
		if !isTimerEvent(payload) {
			return onMessages(ctx, payload)
		}
		var ev events.TimerEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("timer event: %w", err)
		}
		return onTimer(ctx, ev)
	}
}

// isTimerEvent tells FC's timer event ({triggerTime, triggerName, payload}) from a CloudEvent, which
// has neither of the first two, or a batch of them (a JSON array).
func isTimerEvent(payload []byte) bool {
	var fields map[string]json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(payload), []byte("[")) || json.Unmarshal(payload, &fields) != nil {
		return false
	}
	_, hasTime := fields["triggerTime"]
	_, hasName := fields["triggerName"]
	return hasTime || hasName
}
