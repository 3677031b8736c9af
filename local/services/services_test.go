package services

import (
	"context"
	"database/sql"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestPrivateServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	ctx := context.Background()
	r, err := StartRedis(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart: exists=%d err=%v; a restart must lose the data", n, err)
	}
	pid := r.proc.cmd.Process.Pid
	r.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("redis pid %d still alive after Stop", pid)
	}

	m, err := StartMariaDB(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CreateDatabase(ctx, "probe"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", m.DSN("probe"))
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select: %d %v", one, err)
	}
	db.Close()
	pid = m.proc.cmd.Process.Pid
	m.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("mariadb pid %d still alive after Stop", pid)
	}
}

func TestLeasedRedisDatabasesAreDistinct(t *testing.T) {
	e := Env(t)
	if e.Cluster() {
		t.Skip("a cluster has database 0 only; tests lease the whole cluster instead")
	}
	a, b := e.standalone(t), e.standalone(t)
	if a.Options().DB == b.Options().DB {
		t.Fatalf("two tests share database %d", a.Options().DB)
	}
	if err := a.Set(context.Background(), "only-in-a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Exists(context.Background(), "only-in-a").Result(); n != 0 {
		t.Fatal("keys leak between leased databases")
	}
	dsn1, dsn2 := e.MySQLDSN(t), e.MySQLDSN(t)
	if dsn1 == dsn2 {
		t.Fatal("two tests share a MySQL database")
	}
}

func TestMain(m *testing.M) { Main(m) }
