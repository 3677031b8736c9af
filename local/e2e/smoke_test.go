package e2e

import (
	"net/http"
	"testing"
	"time"
)

func TestSmokeCampaignAndClaim(t *testing.T) {
	h := startStack(t, stackOptions())
	id, r := h.createCampaign(nil)
	if !inSync(r) {
		t.Fatalf("create answered in_sync=false: %s", r.Raw)
	}
	c := h.must(h.claim("u1", id, "r1"), http.StatusCreated)
	if c.Body["claim"] == nil {
		t.Fatalf("no claim in %s", c.Raw)
	}
	eventually(t, 10*time.Second, "the claim in MySQL", func() bool {
		r := h.do("GET", "/v1/claims", h.userToken("u1"), nil)
		list, _ := r.Body["claims"].([]any)
		return r.Status == 200 && len(list) == 1
	})
}
