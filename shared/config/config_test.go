package config

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	c, err := Load(envOf(map[string]string{EnvMySQLDSN: "root@tcp(127.0.0.1:1)/b", EnvSyncWait: "500ms", EnvClaimRateLimit: "0"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SyncWait != 500*time.Millisecond || c.ClaimRateLimit != 0 || c.TopicGrants != "benefit-grants" || c.LogLevel != "info" {
		t.Fatalf("%+v", c)
	}
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvSyncWait: "soon"}, EnvSyncWait},
		{map[string]string{EnvSyncWait: "3s"}, EnvSyncWait},
		{map[string]string{EnvClaimRateLimit: "-1"}, EnvClaimRateLimit},
		{map[string]string{EnvGrantBatch: "many"}, EnvGrantBatch},
		{map[string]string{EnvRedisAddr: "proxy:6379", EnvRedisCluster: "a:1"}, EnvRedisCluster},
		{map[string]string{EnvRedisWait: "one"}, EnvRedisWait},
		{map[string]string{EnvRedisWaitFor: "-1s"}, EnvRedisWaitFor},
	}
	for _, tc := range cases {
		if _, err := Load(envOf(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v should name %s", tc.env, err, tc.want)
		}
	}
	err = Config{MySQLDSN: "x"}.Require(EnvMySQLDSN, EnvRedisAddr, EnvJWTSecret)
	if err == nil || !strings.Contains(err.Error(), EnvRedisAddr) || !strings.Contains(err.Error(), EnvJWTSecret) || strings.Contains(err.Error(), EnvMySQLDSN) {
		t.Fatalf("Require: %v", err)
	}
	if c.RedisWaitReplicas != 0 || c.RedisWaitTimeout != 100*time.Millisecond {
		t.Fatalf("replica acknowledgement defaults: %d, %s", c.RedisWaitReplicas, c.RedisWaitTimeout)
	}
	c, err = Load(envOf(map[string]string{EnvRedisCluster: " 10.0.0.1:6379, 10.0.0.2:6379 ,,", EnvRedisWait: "1", EnvRedisWaitFor: "50ms"}))
	if err != nil || len(c.RedisCluster) != 2 || c.RedisCluster[0] != "10.0.0.1:6379" || c.RedisCluster[1] != "10.0.0.2:6379" || c.RedisAddr != "" ||
		c.RedisWaitReplicas != 1 || c.RedisWaitTimeout != 50*time.Millisecond {
		t.Fatalf("cluster seeds: %+v, %v", c.RedisCluster, err)
	}
	if err := c.Require(EnvRedisAddr); err != nil {
		t.Fatalf("cluster seeds must satisfy the Redis requirement: %v", err)
	}
}
