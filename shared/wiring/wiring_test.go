package wiring

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/fault"
)

func TestRedisClientFollowsTheConfiguredMode(t *testing.T) {
	standalone := RedisClient(config.Config{RedisAddr: "127.0.0.1:1"})
	defer standalone.Close()
	if _, ok := standalone.(*redis.Client); !ok {
		t.Fatalf("REDIS_ADDR: got %T, want *redis.Client (standalone or proxy)", standalone)
	}
	cluster := RedisClient(config.Config{RedisCluster: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	defer cluster.Close()
	cc, ok := cluster.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("REDIS_CLUSTER_ADDRS: got %T, want *redis.ClusterClient", cluster)
	}
	if o := cc.Options(); len(o.Addrs) != 2 || o.ClusterStateReloadInterval > 5e9 || o.ReadOnly {
		t.Fatalf("cluster options: addrs %v, reload every %s, read-only %v", o.Addrs, o.ClusterStateReloadInterval, o.ReadOnly)
	}
}

func TestStartUpRetriesOnlyTransientFailuresWithinItsBudget(t *testing.T) {
	refused := fault.Retryable(errors.New("connection refused"))
	badDSN := fault.Permanent(errors.New("bad dsn"))
	policy := retryPolicy{budget: 200 * time.Millisecond, first: time.Millisecond, max: 5 * time.Millisecond}
	cases := []struct {
		name      string
		failures  []error // what the first calls return; later calls succeed
		wantCalls int
		wantErr   error
	}{
		{"first try", nil, 1, nil},
		{"transient then up", []error{refused, refused}, 3, nil},
		{"permanent is not retried", []error{badDSN, nil}, 1, badDSN},
		{"transient past the budget", repeat(refused, 1000), -1, refused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			v, err := retry(policy, "dep", func() (int, error) {
				calls++
				if calls <= len(c.failures) && c.failures[calls-1] != nil {
					return 0, c.failures[calls-1]
				}
				return 42, nil
			})
			if !errors.Is(err, c.wantErr) || (c.wantErr != nil) != (err != nil) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if err == nil && v != 42 {
				t.Fatalf("value %d, want 42", v)
			}
			if c.wantCalls > 0 && calls != c.wantCalls {
				t.Fatalf("%d calls, want %d", calls, c.wantCalls)
			}
			if c.wantCalls < 0 && (calls < 10 || calls >= 1000) {
				t.Fatalf("%d calls: the budget should allow a few dozen and stop the rest", calls)
			}
		})
	}
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}
