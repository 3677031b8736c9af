// Package rules is the admin API of the rules function: campaigns, users and points credits. Every
// write commits to MySQL together with an outbox row, then publishes {entity, id, version} so cachesync
// applies it to Redis, then waits a bounded time for the cache to show the new version. A publish that
// fails is not an error for the operator: the timer's outbox relay sends it again.
package rules

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/httpapi"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Store is the MySQL side the admin API needs.
type Store interface {
	CreateCampaign(ctx context.Context, c domain.Campaign) (domain.Campaign, domain.OutboxEntry, error)
	UpdateCampaign(ctx context.Context, id string, expectedVersion int64, p domain.CampaignPatch) (domain.Campaign, domain.OutboxEntry, error)
	Campaign(ctx context.Context, id string) (domain.CampaignRecord, error)
	Campaigns(ctx context.Context) ([]domain.CampaignRecord, error)
	PutUser(ctx context.Context, id string, u domain.UserPut) (domain.User, domain.OutboxEntry, error)
	User(ctx context.Context, id string) (domain.UserRecord, error)
	CreditPoints(ctx context.Context, id string, c domain.PointsCredit) (domain.User, *domain.OutboxEntry, error)
	MarkOutboxSent(ctx context.Context, ids ...int64) error
}

// Cache is the Redis side the admin API reads to report sync state.
type Cache interface {
	Campaign(ctx context.Context, id string) (domain.CachedCampaign, error)
	User(ctx context.Context, id string) (domain.CachedUser, error)
}

// Publisher sends change events, and the delay messages that start grant campaigns on time.
type Publisher interface {
	PublishChange(ctx context.Context, ev mq.ChangeEvent) error
	PublishGrantStart(ctx context.Context, g mq.GrantStart, deliverAt time.Time) error
}

// Config bounds the wait for the cache.
type Config struct {
	SyncWait     time.Duration // at most 2 s by the HTTP contract
	PollInterval time.Duration
	Now          func() time.Time      // the clock grant starts are scheduled by (time.Now)
	GrantStarts  domain.GrantStartPlan // zero: domain.DefaultGrantStartPlan
}

// API serves the admin routes.
type API struct {
	store    Store
	cache    Cache
	pub      Publisher
	verifier *auth.Verifier
	random   io.Reader
	cfg      Config
	router   *httpapi.Router
}

// New wires the admin API. random supplies campaign ids (crypto/rand.Reader in production).
func New(store Store, cache Cache, pub Publisher, verifier *auth.Verifier, random io.Reader, cfg Config) *API {
	if cfg.SyncWait <= 0 || cfg.SyncWait > 2*time.Second {
		cfg.SyncWait = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GrantStarts == (domain.GrantStartPlan{}) {
		cfg.GrantStarts = domain.DefaultGrantStartPlan()
	}
	a := &API{store: store, cache: cache, pub: pub, verifier: verifier, random: random, cfg: cfg, router: httpapi.NewRouter()}
	a.router.Handle("POST", "/v1/campaigns", a.operator(a.createCampaign))
	a.router.Handle("GET", "/v1/campaigns", a.operator(a.listCampaigns))
	a.router.Handle("GET", "/v1/campaigns/{id}", a.operator(a.getCampaign))
	a.router.Handle("PATCH", "/v1/campaigns/{id}", a.operator(a.patchCampaign))
	a.router.Handle("PUT", "/v1/users/{id}", a.operator(a.putUser))
	a.router.Handle("GET", "/v1/users/{id}", a.operator(a.getUser))
	a.router.Handle("POST", "/v1/users/{id}/points", a.operator(a.creditPoints))
	// The contract itself, readable without a token: it describes the API, not anyone's data.
	a.router.Handle("GET", "/v1/openapi.yaml", httpapi.ServeOpenAPI)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Routes lists what the API serves, for the test that holds it to the OpenAPI description.
func (a *API) Routes() []httpapi.Route { return a.router.Routes() }

func (a *API) operator(h httpapi.HandlerFunc) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := a.verifier.Require(r, auth.RoleOperator); err != nil {
			return err
		}
		return h(w, r)
	}
}

type campaignCache struct {
	Version   int64 `json:"version"`
	Remaining int64 `json:"remaining"`
	Issued    int64 `json:"issued"`
	InSync    bool  `json:"in_sync"`
}

type campaignView struct {
	Campaign domain.Campaign `json:"campaign"`
	Cache    campaignCache   `json:"cache"`
}

type userCache struct {
	Version int64 `json:"version"`
	InSync  bool  `json:"in_sync"`
	Points  int64 `json:"points"`
}

type userView struct {
	User  domain.User `json:"user"`
	Cache userCache   `json:"cache"`
}

func utc(c domain.Campaign) domain.Campaign {
	c.StartsAt, c.EndsAt = c.StartsAt.UTC(), c.EndsAt.UTC()
	return c
}

// cacheReadBudget bounds the cache reads of one answer (a list's included): a healthy Redis answers in
// a millisecond, and one that cannot be reached is reported as not in sync rather than holding the
// answer (reads on the request's context took 1.6 s each).
const cacheReadBudget = 500 * time.Millisecond

func (a *API) cacheReads(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, cacheReadBudget)
}

// campaignView reads the campaign's cache state under ctx, which the caller bounds (cacheReads).
func (a *API) campaignView(ctx context.Context, c domain.Campaign) campaignView {
	cc, err := a.cache.Campaign(ctx, c.ID)
	if err != nil {
		// The database answered; a cache we cannot read is reported as not in sync, not as a failure.
		obs.Logger(ctx).Warn("reading campaign cache", "campaign_id", c.ID, "error", err.Error())
		cc = domain.CachedCampaign{}
	}
	return campaignView{Campaign: utc(c), Cache: campaignCache{
		Version: cc.Version, Remaining: cc.Remaining, Issued: cc.Issued,
		InSync: cc.Present && cc.Version == c.Version,
	}}
}

// userView reads the user's cache state under ctx, which the caller bounds (cacheReads).
func (a *API) userView(ctx context.Context, u domain.User) userView {
	cu, err := a.cache.User(ctx, u.ID)
	if err != nil {
		obs.Logger(ctx).Warn("reading user cache", "user_id", u.ID, "error", err.Error())
		cu = domain.CachedUser{}
	}
	u.RegisteredAt = u.RegisteredAt.UTC()
	return userView{User: u, Cache: userCache{Version: cu.Version, InSync: cu.Present && cu.Version >= u.Version, Points: cu.Balance}}
}

// publish sends the change and marks the outbox row sent. Failures are logged, not returned: the row
// stays unsent and the relay delivers it.
func (a *API) publish(ctx context.Context, e domain.OutboxEntry) {
	ev := mq.ChangeEvent{Entity: e.Entity, ID: e.EntityID, Version: e.Version}
	if err := a.pub.PublishChange(ctx, ev); err != nil {
		obs.Logger(ctx).Warn("publishing change failed; the outbox relay will retry", "entity", e.Entity, "id", e.EntityID, "version", e.Version, "error", err.Error())
		return
	}
	if err := a.store.MarkOutboxSent(ctx, e.ID); err != nil {
		obs.Logger(ctx).Warn("marking outbox row sent failed; the relay may send it twice, which is harmless", "outbox_id", e.ID, "error", err.Error())
	}
}

// scheduleGrantStart sends a grant campaign's delay message for its starts_at, so the timer grants it
// on time; every write sends one for its own version, and the timer drops those of older versions. A
// failed send is logged, not returned: the minute timer grants the campaign at most a minute late.
func (a *API) scheduleGrantStart(ctx context.Context, c domain.Campaign) {
	at, ok := a.cfg.GrantStarts.Schedule(c, a.cfg.Now())
	if !ok {
		return
	}
	if err := a.pub.PublishGrantStart(ctx, mq.GrantStart{CampaignID: c.ID, Version: c.Version}, at); err != nil {
		obs.Logger(ctx).Warn("publishing grant start failed; the minute timer grants the campaign", "id", c.ID, "version", c.Version, "error", err.Error())
	}
}

// waitCampaign polls the cache until it shows version or the bounded wait ends.
func (a *API) waitCampaign(ctx context.Context, id string, version int64) {
	a.wait(ctx, func(ctx context.Context) bool {
		cc, err := a.cache.Campaign(ctx, id)
		return err == nil && cc.Present && cc.Version >= version
	})
}

func (a *API) waitUser(ctx context.Context, id string, version int64) {
	a.wait(ctx, func(ctx context.Context) bool {
		cu, err := a.cache.User(ctx, id)
		return err == nil && cu.Present && cu.Version >= version
	})
}

// wait polls done until it holds or SyncWait is over. done gets the bounded context: a Redis that
// cannot be reached takes a command over a second and a half to fail (go-redis dials five times, and
// retries the command once), and polls on the request's context ran a write past the function's 10 s.
func (a *API) wait(ctx context.Context, done func(context.Context) bool) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.SyncWait)
	defer cancel()
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	for !done(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *API) createCampaign(w http.ResponseWriter, r *http.Request) error {
	body, err := httpapi.ReadBody(r)
	if err != nil {
		return err
	}
	c, err := domain.DecodeNewCampaign(body)
	if err != nil {
		return err
	}
	if c.ID, err = domain.NewCampaignID(a.random); err != nil {
		return err
	}
	created, entry, err := a.store.CreateCampaign(r.Context(), c)
	if err != nil {
		return err
	}
	a.publish(r.Context(), entry)
	a.waitCampaign(r.Context(), created.ID, created.Version)
	a.scheduleGrantStart(r.Context(), created)
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	view := a.campaignView(reads, created)
	w.Header().Set("ETag", etag(created.Version))
	w.Header().Set("Location", "/v1/campaigns/"+created.ID)
	httpapi.WriteJSON(w, http.StatusCreated, view)
	return nil
}

func pathID(r *http.Request, what string) (string, error) {
	id := r.PathValue("id")
	if !domain.ValidID(id) {
		return "", domain.Invalid(what, "must be 1 to %d characters of [A-Za-z0-9_-]", domain.MaxIDLength)
	}
	return id, nil
}

func (a *API) getCampaign(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "campaign id")
	if err != nil {
		return err
	}
	rec, err := a.store.Campaign(r.Context(), id)
	if err != nil {
		return err
	}
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	view := a.campaignView(reads, rec.Campaign)
	w.Header().Set("ETag", etag(rec.Campaign.Version))
	httpapi.WriteJSON(w, http.StatusOK, view)
	return nil
}

func (a *API) listCampaigns(w http.ResponseWriter, r *http.Request) error {
	recs, err := a.store.Campaigns(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Campaigns []campaignView `json:"campaigns"`
	}{Campaigns: make([]campaignView, 0, len(recs))}
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	for _, rec := range recs {
		out.Campaigns = append(out.Campaigns, a.campaignView(reads, rec.Campaign))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// ParseIfMatch accepts a bare or quoted version (3 or "3"), and a weak validator W/"3".
func ParseIfMatch(h string) (int64, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, domain.Refuse(domain.CodePreconditionRequired, "If-Match with the campaign version is required")
	}
	h = strings.TrimPrefix(h, "W/")
	h = strings.Trim(h, `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil || v < 1 {
		return 0, domain.Invalid("If-Match", "must be the campaign version, such as 3 or \"3\"")
	}
	return v, nil
}

// idAndBody reads a route's {id} and decodes its body, in that order: the start of every write to one
// entity, so a bad id is reported before a bad body.
func idAndBody[T any](r *http.Request, what string, decode func([]byte) (T, error)) (string, T, error) {
	var zero T
	id, err := pathID(r, what)
	if err != nil {
		return "", zero, err
	}
	body, err := httpapi.ReadBody(r)
	if err != nil {
		return "", zero, err
	}
	in, err := decode(body)
	if err != nil {
		return "", zero, err
	}
	return id, in, nil
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

func (a *API) patchCampaign(w http.ResponseWriter, r *http.Request) error {
	id, patch, err := idAndBody(r, "campaign id", domain.DecodeCampaignPatch)
	if err != nil {
		return err
	}
	expected, err := ParseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	updated, entry, err := a.store.UpdateCampaign(r.Context(), id, expected, patch)
	if err != nil {
		return err
	}
	a.publish(r.Context(), entry)
	a.waitCampaign(r.Context(), updated.ID, updated.Version)
	a.scheduleGrantStart(r.Context(), updated)
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	view := a.campaignView(reads, updated)
	w.Header().Set("ETag", etag(updated.Version))
	httpapi.WriteJSON(w, http.StatusOK, view)
	return nil
}

func (a *API) putUser(w http.ResponseWriter, r *http.Request) error {
	id, in, err := idAndBody(r, "user id", domain.DecodeUserPut)
	if err != nil {
		return err
	}
	u, entry, err := a.store.PutUser(r.Context(), id, in)
	if err != nil {
		return err
	}
	a.publish(r.Context(), entry)
	a.waitUser(r.Context(), u.ID, u.Version)
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	httpapi.WriteJSON(w, http.StatusOK, a.userView(reads, u))
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "user id")
	if err != nil {
		return err
	}
	rec, err := a.store.User(r.Context(), id)
	if err != nil {
		return err
	}
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	httpapi.WriteJSON(w, http.StatusOK, a.userView(reads, rec.User))
	return nil
}

func (a *API) creditPoints(w http.ResponseWriter, r *http.Request) error {
	id, credit, err := idAndBody(r, "user id", domain.DecodePointsCredit)
	if err != nil {
		return err
	}
	u, entry, err := a.store.CreditPoints(r.Context(), id, credit)
	if err != nil {
		return err
	}
	if entry != nil {
		a.publish(r.Context(), *entry)
	}
	a.waitUser(r.Context(), u.ID, u.Version)
	reads, cancel := a.cacheReads(r.Context())
	defer cancel()
	httpapi.WriteJSON(w, http.StatusOK, a.userView(reads, u))
	return nil
}
