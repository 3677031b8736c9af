package domain

import "hash/fnv"

// A campaign's stock split into buckets (Campaign.Buckets > 1) lets one hot campaign's claims spread
// over a Redis Cluster's masters: each bucket lives in a hash slot of its own and holds an allocation,
// a part of the stock. The allocations never add up to more than the stock, so no bucket can sell a
// unit another bucket may also sell; a bucket that runs dry borrows units from the others, and a stock
// change first closes every bucket at what it has issued, then hands out what is left. This file holds
// the arithmetic; rediscache the scripts.

// StockBuckets is how many buckets c's stock is split into.
func (c Campaign) StockBuckets() int {
	if c.Buckets < 1 {
		return 1
	}
	return c.Buckets
}

// HomeBucket is the bucket that decides every claim of userID on a campaign of n buckets: the user's
// held count and claim records live there, so the per-user limit and request ids stay exact.
func HomeBucket(userID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(userID))
	return int(h.Sum32() % uint32(n))
}

// Reallocation is how a stock change opens the buckets again once each is closed at what it had
// issued (sealed[b], its allocation at the seal): the floor of issued units the cache must count
// (what MySQL recorded plus grants on their way) is kept, and the rest of the stock is shared out.
type Reallocation struct {
	// Shortfall is what the floor counts beyond the buckets' own counts (a cache that lost grants):
	// bucket 0 counts it as issued, so those units are never sold again.
	Shortfall int64
	// Share is what each bucket's allocation grows by.
	Share []int64
	// Over: the stock is below what the buckets count as issued (floor included), so a reservation
	// released from now on gives its unit up instead of selling it again.
	Over bool
}

// Reallocate shares stock among buckets sealed at the allocations sealed, never handing out more than
// stock minus what they hold and minus the shortfall to floor: the allocations then add up to at most
// max(stock, what was issued), so no unit is sold twice. Deterministic: a retried stock change
// computes the same shares from the same seals.
func Reallocate(stock, floor int64, sealed []int64) Reallocation {
	var held int64
	for _, a := range sealed {
		held += a
	}
	r := Reallocation{Share: make([]int64, len(sealed))}
	if floor > held {
		r.Shortfall = floor - held
		held = floor
	}
	r.Over = stock < held
	left := stock - held
	if left <= 0 || len(sealed) == 0 {
		return r
	}
	n := int64(len(sealed))
	for b := range sealed {
		r.Share[b] = left / n
		if int64(b) < left%n {
			r.Share[b]++
		}
	}
	return r
}

// LoanSize is how many units a bucket with spare units (allocated, not issued) lends to a dry one
// when n buckets share the stock: its fair part, at least one, so the last units still move.
func LoanSize(spare int64, n int) int64 {
	if spare <= 0 {
		return 0
	}
	if n < 1 {
		n = 1
	}
	if l := spare / int64(n); l > 0 {
		return l
	}
	return 1
}
