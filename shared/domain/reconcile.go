package domain

import "time"

// SealGrace is how long a campaign split into buckets may stay sealed by a change before the
// reconciler repairs it: far longer than a change takes (milliseconds per bucket), longer than any
// invocation that may still be running one (10 s).
const SealGrace = 30 * time.Second

// CacheView is what Redis holds for a campaign, as the reconciler reads it.
type CacheView struct {
	Present bool
	Version int64
	Stock   int64
	Issued  int64 // granted plus reserved, as counted by the claim script
	// SealedFor is how long a bucket of the campaign has been sealed by a change (0: none is).
	SealedFor time.Duration
	// GivingUp: the campaign's buckets give up the units of released reservations (a stock change
	// left them over the stock), which no bucket can undo alone once they fall below it again.
	GivingUp bool
}

// DBView is what MySQL holds for the same campaign.
type DBView struct {
	Version int64
	Stock   int64
	Issued  int64 // claims recorded by the ledger
}

// Drift is the reconciler's verdict on one campaign.
type Drift string

const (
	DriftNone Drift = ""
	// DriftMissing: the cache lost the campaign; it must be rebuilt from MySQL (claims answer 503 meanwhile).
	DriftMissing Drift = "missing"
	// DriftStaleVersion: the cache is behind MySQL; the change is republished so cachesync applies it.
	DriftStaleVersion Drift = "stale_version"
	// DriftAheadVersion: the cache claims a version MySQL never wrote, which only a bug or a restore of an
	// older database explains; the campaign is rewritten from MySQL, past the version fence.
	DriftAheadVersion Drift = "ahead_version"
	// DriftStockMismatch: same version, other stock. The fence would drop a republished event of that
	// version, so the row is rewritten from MySQL past the fence.
	DriftStockMismatch Drift = "stock_mismatch"
	// DriftIssuedBehind: MySQL records more units than Redis counted. Redis decides stock, so this means
	// Redis may issue more than stock allows; the cache's issued count is raised to MySQL's.
	DriftIssuedBehind Drift = "issued_behind"
	// DriftIssuedAhead: Redis counts units MySQL does not have yet. Normal while the ledger drains; once
	// inFlight (grants the ledger has not written) is accounted for, a remainder means lost grants to replay.
	DriftIssuedAhead Drift = "issued_ahead"
	// DriftSealed: a bucket has been sealed by a change for longer than SealGrace; the change was cut
	// short (its retries ran out, or it was a repair that died) and its redelivery cannot finish it.
	// The campaign is rewritten from MySQL, which seals and opens every bucket again.
	DriftSealed Drift = "sealed"
	// DriftUndersold: a campaign split into buckets whose stock was lowered below what they had issued
	// gives up each reservation released since, for each bucket only knows its own count; once the
	// buckets' issued total is below the stock again, units are for sale that no bucket sells. The
	// campaign is rewritten from MySQL, which shares out what is left.
	DriftUndersold Drift = "undersold"
)

// Reconcile compares one campaign's cache and database views. inFlight is the number of grants known to
// be on their way to MySQL (in the Redis stream but not yet in the ledger).
func Reconcile(db DBView, cache CacheView, inFlight int64) Drift {
	switch {
	case !cache.Present:
		return DriftMissing
	case cache.SealedFor > SealGrace:
		return DriftSealed
	case cache.Version < db.Version:
		return DriftStaleVersion
	case cache.Version > db.Version:
		return DriftAheadVersion
	case cache.Stock != db.Stock:
		return DriftStockMismatch
	case cache.Issued < db.Issued:
		return DriftIssuedBehind
	case cache.GivingUp && cache.Issued < cache.Stock:
		return DriftUndersold
	case cache.Issued > db.Issued+inFlight:
		return DriftIssuedAhead
	}
	return DriftNone
}

// GrantsLost says whether Redis had granted more units (grantedBefore: issued minus reservations, read
// before the stream and MySQL) than MySQL records and the stream still carries to it. Every unit granted
// by then is in one of the two unless it was lost, so a surplus is lost grants; a DriftIssuedAhead
// without one is grants made while the reconciler read, counted in the cache's later view only.
func GrantsLost(grantedBefore, dbIssued, streamed int64) bool {
	return grantedBefore > dbIssued+streamed
}
