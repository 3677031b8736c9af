package domain

import (
	"fmt"
	"reflect"
	"testing"
)

func TestReallocate(t *testing.T) {
	for _, tc := range []struct {
		name         string
		stock, floor int64
		sealed       []int64
		want         Reallocation
	}{
		{"fresh campaign shares evenly", 100, 0, []int64{0, 0, 0, 0}, Reallocation{Share: []int64{25, 25, 25, 25}}},
		{"the remainder goes to the first buckets", 10, 0, []int64{0, 0, 0, 0}, Reallocation{Share: []int64{3, 3, 2, 2}}},
		{"stock lowered below what was issued hands out nothing", 10, 0, []int64{5, 4, 3}, Reallocation{Share: []int64{0, 0, 0}, Over: true}},
		{"stock lowered to exactly what was issued is not over", 12, 0, []int64{5, 4, 3}, Reallocation{Share: []int64{0, 0, 0}}},
		{"a floor above the stock is over", 10, 11, []int64{3, 3}, Reallocation{Shortfall: 5, Share: []int64{0, 0}, Over: true}},
		{"stock lowered to just above what was issued", 13, 0, []int64{5, 4, 3}, Reallocation{Share: []int64{1, 0, 0}}},
		{"a floor above the buckets' counts is a shortfall and is not sold again", 100, 30, []int64{10, 10, 0}, Reallocation{Shortfall: 10, Share: []int64{24, 23, 23}}},
		{"a floor below the buckets' counts changes nothing", 12, 5, []int64{3, 3, 3}, Reallocation{Share: []int64{1, 1, 1}}},
		{"stock 0", 0, 0, []int64{0, 0}, Reallocation{Share: []int64{0, 0}}},
		{"one bucket", 7, 2, []int64{1}, Reallocation{Shortfall: 1, Share: []int64{5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Reallocate(tc.stock, tc.floor, tc.sealed)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Reallocate(%d, %d, %v) = %+v, want %+v", tc.stock, tc.floor, tc.sealed, got, tc.want)
			}
		})
	}
}

// The allocations after a reallocation never exceed the larger of the stock and what was issued.
func TestReallocateNeverAllocatesMoreThanTheStock(t *testing.T) {
	for stock := int64(0); stock < 40; stock += 3 {
		for floor := int64(0); floor < 40; floor += 7 {
			for _, sealed := range [][]int64{{0}, {1, 2}, {5, 0, 9}, {3, 3, 3, 3, 3}} {
				r := Reallocate(stock, floor, sealed)
				var total, held int64
				for b, a := range sealed {
					total += a + r.Share[b]
					held += a
				}
				total += r.Shortfall
				if limit := max(stock, max(floor, held)); total > limit {
					t.Fatalf("stock %d floor %d sealed %v: %d allocated, more than %d", stock, floor, sealed, total, limit)
				}
				if held+r.Shortfall < floor {
					t.Fatalf("stock %d floor %d sealed %v: counts %d below the floor", stock, floor, sealed, held+r.Shortfall)
				}
			}
		}
	}
}

func TestLoanSize(t *testing.T) {
	for _, tc := range []struct {
		spare int64
		n     int
		want  int64
	}{{0, 4, 0}, {-3, 4, 0}, {1, 4, 1}, {3, 4, 1}, {8, 4, 2}, {100, 8, 12}, {5, 0, 5}} {
		if got := LoanSize(tc.spare, tc.n); got != tc.want {
			t.Errorf("LoanSize(%d, %d) = %d, want %d", tc.spare, tc.n, got, tc.want)
		}
	}
}

func TestHomeBucket(t *testing.T) {
	if got := HomeBucket("anyone", 1); got != 0 {
		t.Fatalf("one bucket: home %d", got)
	}
	if got := HomeBucket("anyone", 0); got != 0 {
		t.Fatalf("zero buckets means one: home %d", got)
	}
	// Stable (a user's records must be found where they were written) and spread.
	seen := map[int]int{}
	for i := 0; i < 800; i++ {
		u := fmt.Sprintf("user-%d", i)
		b := HomeBucket(u, 8)
		if b != HomeBucket(u, 8) || b < 0 || b >= 8 {
			t.Fatalf("HomeBucket(%q, 8) = %d, unstable or out of range", u, b)
		}
		seen[b]++
	}
	for b := 0; b < 8; b++ {
		if seen[b] < 50 {
			t.Fatalf("bucket %d homes %d of 800 users: %v", b, seen[b], seen)
		}
	}
}
