package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables through which `make test` shares one pair of private servers with every test
// package of a run (local/cmd/services sets them).
const (
	EnvMySQLBase    = "BENEFITS_TEST_MYSQL_DSN_BASE" // a DSN without a database, e.g. root@tcp(127.0.0.1:4321)/
	EnvRedisAddr    = "BENEFITS_TEST_REDIS_ADDR"
	EnvRedisCluster = "BENEFITS_TEST_REDIS_CLUSTER" // the seed addresses of a shared Redis Cluster, comma-separated
	// EnvRedisMode switches a test run's cache to a Redis Cluster: "cluster" makes Redis(t) return a
	// cluster client, on the cluster EnvRedisCluster names or else on one started for the package.
	// Empty or "standalone": a logical database of the standalone server.
	EnvRedisMode = "BENEFITS_TEST_REDIS_MODE"
)

// TestEnv gives tests isolated databases on shared private servers.
type TestEnv struct {
	mysqlBase string
	redisAddr string
	mariadb   *MariaDB
	redis     *Redis
	mu        sync.Mutex
	nextDB    int

	// Cluster mode (EnvRedisMode=cluster).
	clusterAddrs []string
	cluster      *RedisCluster
	leases       int    // tests of this process holding the cluster
	leaseOwner   string // the cross-process lease's value while leases > 0
}

var (
	envOnce sync.Once
	env     *TestEnv
	envErr  error
)

// Main runs a test package with private servers: those named by the environment when `make test` set
// them, otherwise ones started for this package and stopped when it ends. Use it as TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if env != nil {
		env.stop()
	}
	os.Exit(code)
}

func shared() (*TestEnv, error) {
	envOnce.Do(func() {
		e := &TestEnv{mysqlBase: os.Getenv(EnvMySQLBase), redisAddr: os.Getenv(EnvRedisAddr), nextDB: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if e.mysqlBase == "" {
			e.mariadb, envErr = StartMariaDB(ctx, Options{})
			if envErr != nil {
				return
			}
			e.mysqlBase = e.mariadb.DSN("")
		}
		if e.redisAddr == "" {
			e.redis, envErr = StartRedis(ctx, Options{})
			if envErr != nil {
				return
			}
			e.redisAddr = e.redis.Addr()
		}
		switch mode := os.Getenv(EnvRedisMode); mode {
		case "", "standalone":
		case "cluster":
			if v := os.Getenv(EnvRedisCluster); v != "" {
				e.clusterAddrs = strings.Split(v, ",")
			} else {
				e.cluster, envErr = StartRedisCluster(ctx, Options{})
				if envErr != nil {
					e.stop()
					return
				}
				e.clusterAddrs = e.cluster.Addrs()
			}
		default:
			e.stop()
			envErr = fmt.Errorf("%s=%q: want standalone or cluster", EnvRedisMode, mode)
			return
		}
		env = e
	})
	return env, envErr
}

func (e *TestEnv) stop() {
	if e.mariadb != nil {
		e.mariadb.Stop()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
}

// Cluster reports whether Redis(t) hands out cluster clients (EnvRedisMode=cluster).
func (e *TestEnv) Cluster() bool { return len(e.clusterAddrs) > 0 }

// Env returns the package's servers, starting them on first use.
func Env(t testing.TB) *TestEnv {
	t.Helper()
	e, err := shared()
	if err != nil {
		t.Fatalf("private test servers: %v", err)
	}
	return e
}

// MySQLDSN creates a fresh database for the test and returns its DSN; it is dropped at cleanup.
func (e *TestEnv) MySQLDSN(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if err := CreateDatabase(ctx, e.mysqlBase, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { _ = dropDatabase(e.mysqlBase, name) })
	return withDatabase(e.mysqlBase, name)
}

// RedisAddr is the shared server's address (for tools such as redis-benchmark).
func (e *TestEnv) RedisAddr() string { return e.redisAddr }

// Redis returns the test's cache client. Standalone: a client on a logical database of its own,
// flushed, so tests never see each other's keys; databases 1..255 are leased through SET NX on database
// 0, so test processes sharing one server never hand out the same database twice. Cluster
// (EnvRedisMode): a cluster has database 0 only, so a test holds the whole cluster, flushed when it gets
// it: the lease is a key on the standalone server, which every test process of a run shares, and
// tests of one process (sequential) share the lease they hold.
func (e *TestEnv) Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	if e.Cluster() {
		return e.clusterClient(t)
	}
	return e.standalone(t)
}

func (e *TestEnv) standalone(t testing.TB) *redis.Client {
	t.Helper()
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer admin.Close()
	e.mu.Lock()
	start := e.nextDB
	e.nextDB++
	e.mu.Unlock()
	owner := fmt.Sprintf("%d-%d", os.Getpid(), start)
	db := 0
	for i := 0; i < 255 && db == 0; i++ {
		n := 1 + (start+i)%255
		ok, err := admin.SetNX(ctx, fmt.Sprintf("benefits-test-db:%d", n), owner, 30*time.Minute).Result()
		if err != nil {
			t.Fatalf("redis: %v", err)
		}
		if ok {
			db = n
		}
	}
	if db == 0 {
		t.Fatal("redis: all 255 test databases are leased")
	}
	c := redis.NewClient(&redis.Options{Addr: e.redisAddr, DB: db, PoolSize: 64})
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(func() {
		_ = c.FlushDB(ctx).Err()
		_ = c.Close()
		release := redis.NewClient(&redis.Options{Addr: e.redisAddr})
		defer release.Close()
		if v, _ := release.Get(ctx, fmt.Sprintf("benefits-test-db:%d", db)).Result(); v == owner {
			release.Del(ctx, fmt.Sprintf("benefits-test-db:%d", db))
		}
	})
	return c
}

// clusterLeaseTTL bounds how long a crashed test process can keep the others waiting.
const clusterLeaseTTL = 5 * time.Minute

func (e *TestEnv) clusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	ctx := context.Background()
	key := "benefits-test-cluster-lease:" + e.clusterAddrs[0]
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leases == 0 {
		admin := redis.NewClient(&redis.Options{Addr: e.redisAddr})
		owner := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
		deadline := time.Now().Add(clusterLeaseTTL + time.Minute)
		for {
			ok, err := admin.SetNX(ctx, key, owner, clusterLeaseTTL).Result()
			if err != nil {
				admin.Close()
				t.Fatalf("redis cluster lease: %v", err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				admin.Close()
				t.Fatal("redis cluster lease: another test process held it too long")
			}
			time.Sleep(20 * time.Millisecond)
		}
		admin.Close()
		e.leaseOwner = owner
	}
	e.leases++
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: e.clusterAddrs, PoolSize: 64, MaxRedirects: 8,
		// As wiring does: a dead master answers no MOVED; only a reload of the slot map finds its heir.
		ClusterStateReloadInterval: 200 * time.Millisecond})
	if e.leases == 1 {
		if err := FlushAll(ctx, c); err != nil {
			e.releaseLocked(ctx, key)
			t.Fatalf("redis cluster: %v", err)
		}
	}
	t.Cleanup(func() {
		_ = c.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		e.releaseLocked(ctx, key)
	})
	return c
}

func (e *TestEnv) releaseLocked(ctx context.Context, key string) {
	e.leases--
	if e.leases > 0 {
		return
	}
	admin := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer admin.Close()
	if v, _ := admin.Get(ctx, key).Result(); v == e.leaseOwner {
		admin.Del(ctx, key)
	}
}

func withDatabase(base, db string) string {
	// base ends with "/" or "/?params".
	for i := 0; i < len(base); i++ {
		if base[i] == '/' {
			return base[:i+1] + db + base[i+1:]
		}
	}
	return base + "/" + db
}

func dropDatabase(base, name string) error {
	return execSQL(base, fmt.Sprintf("DROP DATABASE IF EXISTS `%s`", name))
}

// MySQLBaseDSN is the shared server's DSN without a database, for callers that create their own.
func (e *TestEnv) MySQLBaseDSN() string { return e.mysqlBase }
