package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/rediscache"
)

func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(p * float64(len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}

// BenchmarkStackClaim is the claim latency a client sees through the local stack (HTTP, FC
// emulator, the claim binary, Redis, the grant publish), with 8 clients at once.
func BenchmarkStackClaim(b *testing.B) {
	h := startStack(b, stackOptions())
	id, _ := h.createCampaign(map[string]any{"stock": 1_000_000_000, "per_user_limit": 1_000_000})
	tokens := make([]string, 512)
	for i := range tokens {
		tokens[i] = h.userToken(fmt.Sprint("bench-", i))
	}
	// Warm every instance of the pool first: cold starts are measured by nobody's users twice.
	var warm sync.WaitGroup
	for i := range 16 {
		warm.Add(1)
		go func() {
			defer warm.Done()
			h.do("POST", "/v1/claims", tokens[i], map[string]any{"campaign_id": id, "request_id": "warm"})
		}()
	}
	warm.Wait()
	var mu sync.Mutex
	var lat []time.Duration
	next := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				r := h.do("POST", "/v1/claims", tokens[(w*8+i)%len(tokens)], map[string]any{"campaign_id": id, "request_id": fmt.Sprint("r", i)})
				d := time.Since(t0)
				if r.Status != 201 && r.Status != 429 {
					b.Errorf("claim: %d %s", r.Status, r.Raw)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50_ms")
	b.ReportMetric(percentile(lat, 0.99), "p99_ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "claims/s")
}

// BenchmarkStackSyncLag is the time from sending a rule change until Redis holds it: the MySQL
// commit with its outbox row, the publish, the broker, the cachesync trigger and function, and the
// fenced Lua apply. A poller reads Redis every 0.5 ms, so the figure is an upper bound.
func BenchmarkStackSyncLag(b *testing.B) {
	h := startStack(b, stackOptions())
	id, _ := h.createCampaign(map[string]any{"stock": 1000})
	cache := rediscache.New(h.redisClient())
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		version := int64(i + 1)
		seen := make(chan time.Time, 1)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := cache.Campaign(ctx, id); err == nil && c.Version > version {
					seen <- time.Now()
					return
				}
				time.Sleep(500 * time.Microsecond)
			}
		}()
		t0 := time.Now()
		r := h.do("PATCH", "/v1/campaigns/"+id, h.operator, map[string]any{"stock": 1000 + i}, "If-Match", fmt.Sprint(version))
		if r.Status != 200 {
			close(stop)
			b.Fatalf("patch: %d %s", r.Status, r.Raw)
		}
		select {
		case at := <-seen:
			lat = append(lat, at.Sub(t0))
		case <-time.After(10 * time.Second):
			close(stop)
			b.Fatal("the change never reached Redis")
		}
		close(stop)
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50_ms")
	b.ReportMetric(percentile(lat, 0.99), "p99_ms")
}
