package domain

import "time"

// The records the services exchange with their stores. They are the services' ports, in the
// domain's own types: the MySQL and Redis adapters produce and take them (their packages name them
// too, as aliases), and a service never needs an adapter's package to say what it wants.

// CampaignRecord is a campaign with the units the ledger recorded.
type CampaignRecord struct {
	Campaign Campaign
	Issued   int64
}

// UserRecord is a user with the points credited and debited in MySQL.
type UserRecord struct {
	User     User
	Credited int64
	Debited  int64
}

// OutboxEntry is a committed change whose publish is owed.
type OutboxEntry struct {
	ID       int64
	Entity   string
	EntityID string
	Version  int64
}

// SyncFailure is a message that could never be applied, parked with why.
type SyncFailure struct {
	ID        int64
	Entity    string
	EntityID  string
	Version   int64
	Reason    string
	Payload   string
	CreatedAt time.Time
}

// RecordResult counts what a batch of grants wrote: new claims, and ones already recorded.
type RecordResult struct {
	Inserted   int
	Duplicates int
}

// GrantCursor pages users oldest registration first, ties by id.
type GrantCursor struct {
	RegisteredAt time.Time
	ID           string
}

// CachedCampaign is a campaign as the cache holds it.
type CachedCampaign struct {
	Present   bool
	Version   int64
	Stock     int64
	Issued    int64 // granted plus reserved
	Remaining int64
	Pending   int64 // reserved by points claims awaiting their debit (reported even when the entry is absent)
	// SealedSince is when the oldest bucket still sealed by a change was sealed (zero: none is). A
	// campaign split into buckets is sealed while a change runs; sealed long after, the change was cut
	// short and nothing will finish it (see Reconcile).
	SealedSince time.Time
	// GivingUp: a stock change left the buckets having issued more than the new stock, so each
	// releases its reserved units unsold (see Reconcile's DriftUndersold).
	GivingUp bool
}

// CachedUser is a user's version and balance as the cache holds them.
type CachedUser struct {
	Present bool
	Version int64
	Balance int64
}

// UserState is a user row as the cache needs it.
type UserState struct {
	ID           string
	RegisteredAt time.Time
	Member       bool
	Credits      int64 // total points credited (MySQL is the authority)
	Debits       int64 // total points debited per MySQL; used only when the cache has no entry
	Version      int64
	// Restore is set by the cache rebuild only: it writes into a slot not yet marked ready, which every
	// other writer must leave alone (see ApplyResult.NotReady).
	Restore bool
}

// ApplyResult says whether a write passed the version fence.
type ApplyResult struct {
	Applied       bool
	CachedVersion int64
}

// NotReady reports a write refused because its slot lost its data and has not been rebuilt yet: the
// change must be retried after the rebuild (which loads the row as MySQL has it by then).
func (r ApplyResult) NotReady() bool { return !r.Applied && r.CachedVersion == -2 }

// ClaimInput is one request for a unit: a user's claim or the timer's scheduled grant.
type ClaimInput struct {
	UserID     string
	CampaignID string
	RequestID  string
	Now        time.Time
	By         Issuance
	RateLimit  int // claims per user per second; 0 disables (grants never limit)
	// Attempt identifies this call. It is stored with the claim, so a script the Redis client re-sends
	// after a read timeout recognises the claim its own first run recorded and answers "granted", not
	// "replayed". Empty: the cache draws a random one; every call is a new attempt.
	Attempt string
}

// ClaimOutcome is the decision. Code is empty when the unit was issued (or had been: Replayed).
type ClaimOutcome struct {
	Claim      Claim
	Code       Code
	Replayed   bool
	RetryAfter time.Duration
	// CacheLost: the answer is unavailable because a slot the claim needs lost its data; claims stay
	// unavailable there until the timer's cache rebuild has run.
	CacheLost bool
}

// Reservation is a unit a points claim holds reserved (pending its debit) in a bucket of its campaign.
type Reservation struct {
	ClaimID string
	Bucket  int
}

// SweepResult counts how pending reservations were resolved.
type SweepResult struct {
	Confirmed int
	Released  int
}

// StreamGrant is a grant in a campaign's stream, with its position there.
type StreamGrant struct {
	StreamID string
	// Stream tells apart the streams of a campaign split into buckets (one per bucket); entries of one
	// stream are in order, and a trim reaches only the stream of the position it names.
	Stream int
	Claim  Claim
}

// Lock is a lock a store holds for the caller until Release.
type Lock interface{ Release() }

// Kinds of grant backstop sessions.
const (
	BackstopSession = "session" // the periodic backstop job
	BackstopDrain   = "drain"   // the cache rebuild's drain
)
