package rediscache

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

// afterFirstRead runs fn once, right after the first command (alone or in a pipeline) naming key.
type afterFirstRead struct {
	key  string
	fn   func()
	done bool
}

func (h *afterFirstRead) names(cmd redis.Cmder) bool {
	return slices.ContainsFunc(cmd.Args(), func(a any) bool { s, _ := a.(string); return s == h.key })
}

func (h *afterFirstRead) after(cmds []redis.Cmder) {
	if !h.done && slices.ContainsFunc(cmds, h.names) {
		h.done = true
		h.fn()
	}
}

func (h *afterFirstRead) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *afterFirstRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after([]redis.Cmder{cmd})
		return err
	}
}
func (h *afterFirstRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(cmds)
		return err
	}
}

// Found by local/e2e's TestStockLoweredWhileClaimsAreInFlight on a cluster: the rules API polls
// Campaign until the cache holds a new campaign. Bucket 0 created by cachesync's first seal right
// after Campaign had read "no bucket 0, so one bucket" made the next read of bucket 0 pass for the whole
// campaign, while its other buckets were still being created; the API answered in sync and the first
// claims homed in those buckets got campaign_not_found.
func TestCampaignViewIsNotFooledByBucketZeroCreatedBetweenReads(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	b0 := keysOfBucket("racing", 0).camp
	h := &afterFirstRead{key: b0, fn: func() {
		// What seal_bucket.lua writes when it creates bucket 0 (sealed, the rule with its bucket count).
		if err := rdb.HSet(ctx, b0, "version", 1, "buckets", 8, "stock", 100, "issued", 0, "alloc", 0, "remaining", 0, "sealed", 1).Err(); err != nil {
			t.Error(err)
		}
	}}
	rdb.AddHook(h)
	for i, when := range []string{"bucket 0 created during the read", "bucket 0 there, its siblings not"} {
		view, err := c.Campaign(ctx, "racing")
		if err != nil {
			t.Fatal(err)
		}
		if view.Present {
			t.Fatalf("read %d (%s): the campaign reads as present at version %d with 7 of its 8 buckets missing", i+1, when, view.Version)
		}
	}

	camp := bucketed("whole", 100, 1, 8)
	if res, err := c.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if view, err := c.Campaign(ctx, "whole"); err != nil || !view.Present || view.Version != camp.Version || view.Stock != 100 {
		t.Fatalf("a campaign of 8 buckets, all there: %+v %v", view, err)
	}
}
