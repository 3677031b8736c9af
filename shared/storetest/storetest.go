// Package storetest opens the project's adapters for integration tests on the private servers of
// local/services: a MySQL store on a fresh database and a Redis cache on a flushed logical database of
// its own, both closed and dropped at cleanup. One helper instead of a copy per test package.
package storetest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// MySQL opens the store, migrated, on a database of the test's own.
func MySQL(t testing.TB) *mysqlstore.Store {
	t.Helper()
	s, err := mysqlstore.Open(context.Background(), services.Env(t).MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Redis opens the cache on a Redis database of the test's own, not yet marked ready (as after a
// restart: claims fail closed until a rebuild). The client is returned for tests that look underneath.
func Redis(t testing.TB) (*rediscache.Cache, redis.UniversalClient) {
	t.Helper()
	rdb := services.Env(t).Redis(t)
	return rediscache.New(rdb), rdb
}

// ReadyRedis is Redis marked ready, as a cache that has been rebuilt or never lost anything.
func ReadyRedis(t testing.TB) (*rediscache.Cache, redis.UniversalClient) {
	t.Helper()
	c, rdb := Redis(t)
	if err := c.MarkReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, rdb
}
