package wiring

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/config"
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
