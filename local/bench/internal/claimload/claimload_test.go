package claimload

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRunCountsEveryCallOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]bool{}
	r := Run(context.Background(), 4, 100, 0, func(_ context.Context, i int) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if seen[i] {
			t.Errorf("index %d twice", i)
		}
		seen[i] = true
		if i%2 == 1 {
			return "", errors.New("odd")
		}
		return "granted", nil
	})
	if r.Calls != 100 || len(seen) != 100 || r.Codes["granted"] != 50 || r.Errs != 50 || r.FirstErr == nil {
		t.Fatalf("calls %d, seen %d, codes %v, errs %d, first %v", r.Calls, len(seen), r.Codes, r.Errs, r.FirstErr)
	}
	if len(r.Lat) != 100 || r.Percentile(0) > r.Percentile(0.99) {
		t.Fatalf("latencies %d, p0 %s p99 %s", len(r.Lat), r.Percentile(0), r.Percentile(0.99))
	}
}

func TestRunStopsAtItsDuration(t *testing.T) {
	// Bounded by time only: the run must end by itself (the count bound is not set).
	r := Run(context.Background(), 2, 0, 50*time.Millisecond, func(context.Context, int) (string, error) {
		time.Sleep(time.Millisecond)
		return "sold_out", nil
	})
	if r.Calls == 0 || r.Codes["sold_out"] != r.Calls || r.PerSec("sold_out") <= 0 {
		t.Fatalf("calls %d, codes %v", r.Calls, r.Codes)
	}
}

func TestPercentileOfNothingIsZero(t *testing.T) {
	if p := (Result{}).Percentile(0.99); p != 0 {
		t.Fatalf("p99 of no calls: %s", p)
	}
	if v := (Result{}).PerSec(""); v != 0 {
		t.Fatalf("rate of no time: %v", v)
	}
}
