// Package claiming is the claim function's API. The decision is one Lua call per Redis slot
// (rediscache.Cache.Claim); this package authenticates, decodes, publishes the grant to RocketMQ before
// answering, and lists a user's claims from MySQL.
//
// A grant whose publish fails is still granted: it is in the campaign's Redis stream, and the timer
// replays to the ledger every grant MySQL does not have. So the user is told yes whenever Redis said yes.
package claiming

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/httpapi"
	"github.com/benefit-issuance/benefits/shared/obs"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Decider decides claims in Redis.
type Decider interface {
	Claim(ctx context.Context, in rediscache.ClaimInput) (rediscache.ClaimOutcome, error)
}

// GrantPublisher sends a grant to the ledger.
type GrantPublisher interface {
	PublishGrant(ctx context.Context, c domain.Claim) error
}

// History lists a user's recorded claims, newest first.
type History interface {
	ClaimsOfUser(ctx context.Context, userID, cursor string, limit int) ([]domain.Claim, string, error)
}

// Config tunes the claim API.
type Config struct {
	RateLimit int // claims per user per second; 0 disables
}

// API serves POST and GET /v1/claims.
type API struct {
	decider  Decider
	pub      GrantPublisher
	history  History
	verifier *auth.Verifier
	now      func() time.Time
	cfg      Config
	router   *httpapi.Router
}

func New(decider Decider, pub GrantPublisher, history History, verifier *auth.Verifier, now func() time.Time, cfg Config) *API {
	if now == nil {
		now = time.Now
	}
	a := &API{decider: decider, pub: pub, history: history, verifier: verifier, now: now, cfg: cfg, router: httpapi.NewRouter()}
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
	out, err := a.decider.Claim(ctx, rediscache.ClaimInput{
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
		return retryLater(domain.CodeUnavailable, "the claim cannot be decided safely now (the campaign is being rebuilt, or this request_id is in progress for another campaign); nothing was issued", time.Second)
	default:
		msg := refusalMessages[out.Code]
		if msg == "" {
			msg = string(out.Code)
		}
		return domain.Refuse(out.Code, "%s", msg)
	}
	if !out.Replayed {
		a.publish(ctx, out.Claim)
	}
	status := http.StatusCreated
	if out.Replayed {
		status = http.StatusOK
	}
	httpapi.WriteJSON(w, status, map[string]claimView{"claim": view(out.Claim)})
	return nil
}

// publish hands the grant to the ledger. It runs even if the client has gone away, because the grant
// exists either way; a failure leaves it to the timer's replay from the Redis stream.
func (a *API) publish(ctx context.Context, c domain.Claim) {
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := a.pub.PublishGrant(pubCtx, c); err != nil {
		obs.Logger(ctx).Warn("publishing grant failed; the timer will replay it from the Redis stream", "claim_id", c.ID, "error", err.Error())
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	p, err := a.verifier.Require(r, auth.RoleUser)
	if err != nil {
		return err
	}
	cursor := r.URL.Query().Get("cursor")
	claims, next, err := a.history.ClaimsOfUser(r.Context(), p.Subject, cursor, 100)
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
