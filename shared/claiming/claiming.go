// Package claiming is the claim function's API. The decision is one Lua call per Redis slot
// (rediscache.Cache.Claim); this package authenticates, decodes, makes the grant durable outside Redis
// before answering, and lists a user's claims from MySQL.
//
// A claim is acknowledged (201, or 200 for a replay) only once its grant is durable outside Redis: in
// the broker (the ledger and the timer's grant backstop both consume it) or, when publishing fails, in
// MySQL, written with the ledger's own idempotent insert. Redis alone is not enough: a Redis restarted
// empty loses its grant stream, and a user told yes would hold a claim MySQL never learns of. When
// neither takes the grant the answer is 503 with the outcome unknown: the grant stays in Redis (the
// timer's grant replay still sends it on while Redis keeps it), and a retry with the same request_id
// tries again to make it durable before it answers.
package claiming

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/httpapi"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Decider decides claims in Redis.
type Decider interface {
	Claim(ctx context.Context, in domain.ClaimInput) (domain.ClaimOutcome, error)
}

// GrantPublisher sends a grant to the ledger, and wakes the timer's cache rebuild when a claim finds
// the cache's data lost.
type GrantPublisher interface {
	PublishGrant(ctx context.Context, c domain.Claim) error
	PublishRebuildWake(ctx context.Context) error
}

// Store is MySQL as the claim API uses it: a user's history, and the ledger's idempotent insert for a
// grant the broker would not take.
type Store interface {
	ClaimsOfUser(ctx context.Context, userID, cursor string, limit int) ([]domain.Claim, string, error)
	RecordClaims(ctx context.Context, claims []domain.Claim) (domain.RecordResult, error)
	ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error)
}

// Config tunes the claim API.
type Config struct {
	RateLimit int // claims per user per second; 0 disables
	// PublishTimeout bounds the publish of a grant (default 2s), RecordTimeout the MySQL write that
	// stands in for it when it fails (default 2s). Together with the Redis calls they must stay well
	// inside the function's timeout (10 s in template.yml), or FC cuts the answer off.
	PublishTimeout time.Duration
	RecordTimeout  time.Duration
	// WakeEvery is how often one instance may wake the cache rebuild (default 2s): while the cache is
	// lost every claim finds it so, and one wake in flight is enough.
	WakeEvery time.Duration
}

func (c *Config) defaults() {
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 2 * time.Second
	}
	if c.RecordTimeout <= 0 {
		c.RecordTimeout = 2 * time.Second
	}
	if c.WakeEvery <= 0 {
		c.WakeEvery = 2 * time.Second
	}
}

// API serves POST and GET /v1/claims.
type API struct {
	decider  Decider
	pub      GrantPublisher
	store    Store
	verifier *auth.Verifier
	now      func() time.Time
	cfg      Config
	router   *httpapi.Router
	lastWake atomic.Int64 // when this instance last woke the cache rebuild, unix ms
}

func New(decider Decider, pub GrantPublisher, store Store, verifier *auth.Verifier, now func() time.Time, cfg Config) *API {
	if now == nil {
		now = time.Now
	}
	cfg.defaults()
	a := &API{decider: decider, pub: pub, store: store, verifier: verifier, now: now, cfg: cfg, router: httpapi.NewRouter()}
	a.router.Handle("POST", "/v1/claims", a.claim)
	a.router.Handle("GET", "/v1/claims", a.list)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Routes lists what the API serves, for the test that holds it to the OpenAPI description.
func (a *API) Routes() []httpapi.Route { return a.router.Routes() }

// unavailable carries Retry-After into the error envelope.
type unavailable struct {
	err   *domain.Error
	after time.Duration
}

func (u unavailable) Error() string             { return u.err.Error() }
func (u unavailable) Unwrap() error             { return u.err }
func (u unavailable) RetryAfter() time.Duration { return u.after }
func retryLater(code domain.Code, msg string, after time.Duration) error {
	return unavailable{err: domain.Refuse(code, "%s", msg), after: after}
}

type claimView struct {
	ID         string         `json:"id"`
	CampaignID string         `json:"campaign_id"`
	UserID     string         `json:"user_id"`
	RequestID  string         `json:"request_id,omitempty"`
	Benefit    domain.Benefit `json:"benefit"`
	CostPoints int64          `json:"cost_points"`
	GrantedAt  time.Time      `json:"granted_at"`
}

func view(c domain.Claim) claimView {
	return claimView{ID: c.ID, CampaignID: c.CampaignID, UserID: c.UserID, RequestID: c.RequestID,
		Benefit: c.Benefit, CostPoints: c.CostPoints, GrantedAt: c.GrantedAt.UTC()}
}

var refusalMessages = map[domain.Code]string{
	domain.CodeNotClaimable:       "this campaign is granted by the platform and cannot be claimed",
	domain.CodeCampaignNotFound:   "no such campaign",
	domain.CodeNotEligible:        "you are outside this campaign's audience",
	domain.CodeNotStarted:         "the campaign has not started yet",
	domain.CodeEnded:              "the campaign has ended",
	domain.CodePaused:             "the campaign is paused",
	domain.CodeSoldOut:            "no stock left",
	domain.CodeLimitReached:       "you already hold the most units this campaign allows",
	domain.CodeInsufficientPoints: "not enough points for this campaign's cost",
}

func (a *API) claim(w http.ResponseWriter, r *http.Request) error {
	p, err := a.verifier.Require(r, auth.RoleUser)
	if err != nil {
		return err
	}
	body, err := httpapi.ReadBody(r)
	if err != nil {
		return err
	}
	req, err := domain.DecodeClaimRequest(body)
	if err != nil {
		return err
	}
	ctx := r.Context()
	out, err := a.decider.Claim(ctx, domain.ClaimInput{
		UserID: p.Subject, CampaignID: req.CampaignID, RequestID: req.RequestID,
		Now: a.now(), By: domain.ByClaim, RateLimit: a.cfg.RateLimit,
	})
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) && de.Code == domain.CodeUnavailable {
			return retryLater(domain.CodeUnavailable, de.Message, time.Second)
		}
		// Redis may have decided before the connection failed, so the honest answer is that the outcome
		// is unknown: a retry with the same request_id returns the claim if there is one, and the
		// grant stream carries it to MySQL either way.
		obs.Logger(ctx).Error("claim decision failed; outcome unknown", "campaign_id", req.CampaignID, "error", err.Error())
		return retryLater(domain.CodeUnavailable, "the claim could not be completed now; retry with the same request_id to learn its outcome", time.Second)
	}
	switch out.Code {
	case "":
	case domain.CodeRateLimited:
		return retryLater(domain.CodeRateLimited, "too many claims; slow down", out.RetryAfter)
	case domain.CodeUnavailable:
		if out.CacheLost {
			a.wakeRebuild(ctx)
		}
		return retryLater(domain.CodeUnavailable, "the claim cannot be decided safely now (the campaign is being rebuilt, or this request_id is in progress for another campaign); nothing was issued", time.Second)
	default:
		msg := refusalMessages[out.Code]
		if msg == "" {
			msg = string(out.Code)
		}
		return domain.Refuse(out.Code, "%s", msg)
	}
	if err := a.durable(ctx, out.Claim, out.Replayed); err != nil {
		return err
	}
	status := http.StatusCreated
	if out.Replayed {
		status = http.StatusOK
	}
	httpapi.WriteJSON(w, status, map[string]claimView{"claim": view(out.Claim)})
	return nil
}

// wakeRebuild asks the timer to rebuild the cache now rather than at its next minute, at most once per
// WakeEvery per instance. It is best effort: the rebuild's own timer runs either way.
func (a *API) wakeRebuild(ctx context.Context) {
	now, last := a.now().UnixMilli(), a.lastWake.Load()
	if now-last < a.cfg.WakeEvery.Milliseconds() || !a.lastWake.CompareAndSwap(last, now) {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := a.pub.PublishRebuildWake(wctx); err != nil {
		obs.Logger(ctx).Warn("could not wake the cache rebuild; its timer runs it", "error", err.Error())
		return
	}
	obs.Logger(ctx).Info("the cache lost its data; woke the cache rebuild")
}

// Where a grant was made durable before the claim was acknowledged.
const (
	durableInMySQL  = "mysql"
	durableInBroker = "broker"
)

// durable returns once the grant is durable outside Redis, or a 503 saying the outcome is unknown. A
// replayed claim may be one whose first answer was that 503, so it is made durable again before it is
// answered: MySQL is asked first (a replay is rare and usually finds the ledger has it), then the same
// path as a new grant. Both writes are idempotent by claim id, so a duplicate costs the ledger a no-op.
// It runs even if the client has gone away, because the grant exists either way.
func (a *API) durable(ctx context.Context, c domain.Claim, replayed bool) error {
	ctx = context.WithoutCancel(ctx)
	where, err := a.makeDurable(ctx, c, replayed)
	if err != nil {
		obs.Logger(ctx).Error("grant is only in Redis: neither the broker nor MySQL took it; answering 503", "claim_id", c.ID, "error", err.Error())
		return retryLater(domain.CodeUnavailable, "the claim could not be completed now and its outcome is unknown; retry with the same request_id to learn it", time.Second)
	}
	if where == durableInMySQL && !replayed {
		obs.Logger(ctx).Warn("publishing grant failed; written to MySQL directly", "claim_id", c.ID)
	}
	return nil
}

func (a *API) makeDurable(ctx context.Context, c domain.Claim, replayed bool) (string, error) {
	if replayed {
		rctx, cancel := context.WithTimeout(ctx, a.cfg.RecordTimeout)
		have, err := a.store.ExistingClaims(rctx, []string{c.ID})
		cancel()
		if err == nil && have[c.ID] {
			return durableInMySQL, nil
		}
	}
	pubErr := a.publish(ctx, c)
	if pubErr == nil {
		return durableInBroker, nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RecordTimeout)
	defer cancel()
	if _, err := a.store.RecordClaims(rctx, []domain.Claim{c}); err != nil {
		return "", fault.Retryable(fmt.Errorf("grant %s: publish: %v; MySQL: %w", c.ID, pubErr, err))
	}
	return durableInMySQL, nil
}

// publish sends the grant, waiting at most PublishTimeout even if the client overstays its context (the
// RocketMQ client's own send retries were seen to take 5 s on a 3 s context). A send still running
// after that may yet land: a duplicate of the MySQL write that follows, which the ledger ignores.
func (a *API) publish(ctx context.Context, c domain.Claim) error {
	return mq.PublishGrantWithin(ctx, a.pub.PublishGrant, c, a.cfg.PublishTimeout)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	p, err := a.verifier.Require(r, auth.RoleUser)
	if err != nil {
		return err
	}
	cursor := r.URL.Query().Get("cursor")
	claims, next, err := a.store.ClaimsOfUser(r.Context(), p.Subject, cursor, 100)
	if err != nil {
		return err
	}
	out := struct {
		Claims     []claimView `json:"claims"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Claims: make([]claimView, 0, len(claims)), NextCursor: next}
	for _, c := range claims {
		out.Claims = append(out.Claims, view(c))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
