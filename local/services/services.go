// Package services starts private MariaDB and Redis instances for tests and the local stack: on free
// loopback ports, with all their files in a temporary folder, never touching a server already running
// on the machine. When a server binary is missing it installs Debian's package (as root), saying so.
package services

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// Options for a private server.
type Options struct {
	Dir string    // where its files go; a new temporary folder when empty
	Log io.Writer // progress messages; os.Stderr when nil
	// Durable runs Redis as production should: an append-only file fsynced before each write is
	// acknowledged, so a crash loses nothing a client was told about.
	Durable bool
}

func (o *Options) prepare(prefix string) (owned bool, err error) {
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Dir == "" {
		o.Dir, err = os.MkdirTemp("", prefix)
		return true, err
	}
	return false, os.MkdirAll(o.Dir, 0o755)
}

// FreePort asks the kernel for an unused loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var aptMu sync.Mutex

// findOrInstall returns the first of names on PATH (or in /usr/sbin, /usr/bin), installing pkg from
// Debian's packages when none is found.
func findOrInstall(log io.Writer, pkg string, names ...string) (string, error) {
	find := func() string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin"} {
				if p := filepath.Join(dir, n); isExecutable(p) {
					return p
				}
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p, nil
	}
	aptMu.Lock()
	defer aptMu.Unlock()
	if p := find(); p != "" {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s not found; install it with: sudo apt-get install -y %s", names[0], pkg)
	}
	fmt.Fprintf(log, "services: %s not found on PATH; installing Debian package %s (apt-get)…\n", names[0], pkg)
	if err := aptInstall(log, pkg); err != nil {
		return "", fmt.Errorf("installing %s: %w", pkg, err)
	}
	if p := find(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%s still not found after installing %s", names[0], pkg)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// aptInstall installs packages without letting their maintainer scripts start system services: a
// policy-rc.d that refuses every start is in place for the duration.
func aptInstall(log io.Writer, pkgs ...string) error {
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	update := exec.Command("apt-get", "update", "-q")
	update.Env, update.Stdout, update.Stderr = env, log, log
	if err := update.Run(); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	install := exec.Command("apt-get", args...)
	install.Env, install.Stdout, install.Stderr = env, log, log
	return install.Run()
}

// process is a child server in its own process group, so stopping it stops everything it started.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(logFile string, name string, args ...string) (*process, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

// MariaDB is a private MariaDB server.
type MariaDB struct {
	Port  int
	dir   string
	owned bool
	bin   string
	proc  *process
}

// StartMariaDB initialises a data directory and starts mariadbd on a free port. root@127.0.0.1 has no
// password. Durability settings are relaxed (no doublewrite, no flush at commit): these servers hold
// test and demo data only.
func StartMariaDB(ctx context.Context, o Options) (*MariaDB, error) {
	owned, err := o.prepare("benefits-mariadb-")
	if err != nil {
		return nil, err
	}
	server, err := findOrInstall(o.Log, "mariadb-server", "mariadbd", "mysqld")
	if err != nil {
		return nil, err
	}
	installDB, err := findOrInstall(o.Log, "mariadb-server", "mariadb-install-db", "mysql_install_db")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(o.Dir, "data")
	// Each instance keeps its temporary tables in its own folder: in the shared /tmp, two instances
	// bootstrapping at once (the fault suite's stacks start together) removed each other's and failed
	// with "Could not remove temporary table".
	tmp := filepath.Join(o.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(data, "mysql")); errors.Is(err, os.ErrNotExist) {
		out, err := exec.CommandContext(ctx, installDB, "--no-defaults", "--datadir="+data, "--user=root",
			"--auth-root-authentication-method=normal", "--skip-test-db", "--tmpdir="+tmp).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("mariadb-install-db: %w: %s", err, tail2(out))
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{Port: port, dir: o.Dir, owned: owned, bin: server}
	if err := m.start(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *MariaDB) start(ctx context.Context) error {
	data := filepath.Join(m.dir, "data")
	logFile := filepath.Join(m.dir, "mariadb.log")
	var err error
	m.proc, err = startProcess(logFile, m.bin, "--no-defaults", "--datadir="+data, "--user=root", "--tmpdir="+filepath.Join(m.dir, "tmp"),
		"--port="+strconv.Itoa(m.Port), "--bind-address=127.0.0.1", "--socket="+filepath.Join(m.dir, "mysqld.sock"),
		"--pid-file="+filepath.Join(m.dir, "mysqld.pid"), "--skip-log-bin", "--skip-name-resolve",
		"--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M", "--innodb-flush-log-at-trx-commit=2",
		"--innodb-doublewrite=0", "--max-connections=500", "--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci", "--log-error="+logFile)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("mysql", m.DSN(""))
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			return nil
		}
		if m.proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			m.proc.stop(time.Second)
			return fmt.Errorf("mariadb did not start: %v; log: %s", err, tail(logFile, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server as a crash would (SIGKILL: committed transactions survive in the redo
// log, in-flight ones are rolled back) and starts it again on the same port and data.
func (m *MariaDB) Restart(ctx context.Context) error {
	m.proc.stop(0)
	return m.start(ctx)
}

func tail2(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Addr is host:port.
func (m *MariaDB) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// DSN is a go-sql-driver DSN for database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	return fmt.Sprintf("root@tcp(%s)/%s?parseTime=true&loc=UTC&timeout=5s", m.Addr(), db)
}

// CreateDatabase creates db if needed.
func (m *MariaDB) CreateDatabase(ctx context.Context, db string) error {
	return CreateDatabase(ctx, m.DSN(""), db)
}

// CreateDatabase creates db on the server of baseDSN (a DSN without a database).
func CreateDatabase(ctx context.Context, baseDSN, db string) error {
	conn, err := sql.Open("mysql", baseDSN)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"` CHARACTER SET utf8mb4")
	return err
}

// Stop kills the server and removes its folder if this package made it.
func (m *MariaDB) Stop() {
	m.proc.stop(10 * time.Second)
	if m.owned {
		_ = os.RemoveAll(m.dir)
	}
}

// Redis is a private redis-server.
type Redis struct {
	Port  int
	dir   string
	owned bool
	bin   string
	proc  *process
	// durable: appendonly with fsync always
	durable bool
}

// StartRedis starts redis-server on a free port with no persistence and 256 logical databases.
func StartRedis(ctx context.Context, o Options) (*Redis, error) {
	owned, err := o.prepare("benefits-redis-")
	if err != nil {
		return nil, err
	}
	bin, err := findOrInstall(o.Log, "redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{Port: port, dir: o.Dir, owned: owned, bin: bin, durable: o.Durable}
	return r, r.start(ctx)
}

func (r *Redis) start(ctx context.Context) error {
	logFile := filepath.Join(r.dir, fmt.Sprintf("redis-%d.log", r.Port))
	var err error
	aof := []string{"--appendonly", "no"}
	if r.durable {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always", "--appenddirname", filepath.Base(r.aofDir())}
	}
	args := append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "", "--dir", r.dir,
		"--dbfilename", filepath.Base(r.dumpFile()), "--databases", "256", "--daemonize", "no"}, aof...)
	r.proc, err = startProcess(logFile, r.bin, args...)
	if err != nil {
		return err
	}
	return waitRedis(ctx, r.Addr(), r.proc, logFile, "redis")
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// Restart stops the server and starts it again empty on the same port: a cache loss.
func (r *Redis) Restart(ctx context.Context) error {
	r.proc.stop(5 * time.Second)
	if err := os.Remove(r.dumpFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.RemoveAll(r.aofDir()); err != nil {
		return err
	}
	return r.start(ctx)
}

// RestartWithData kills the server (SIGKILL, a crash) and starts it again on the same port from what
// it persisted. A durable server loses nothing it acknowledged. A server that is not durable is
// first made to SAVE, so it comes back with its data as of that instant; anything written between
// the SAVE and the kill is lost, as with any Redis persisted less strictly than fsync-always.
func (r *Redis) RestartWithData(ctx context.Context) error {
	if !r.durable {
		client := redis.NewClient(&redis.Options{Addr: r.Addr()})
		err := client.Save(ctx).Err()
		client.Close()
		if err != nil {
			return fmt.Errorf("redis SAVE before restart: %w", err)
		}
	}
	r.proc.stop(0)
	return r.start(ctx)
}

func (r *Redis) aofDir() string { return filepath.Join(r.dir, fmt.Sprintf("aof-%d", r.Port)) }

// dumpFile is where SAVE writes and where a starting server loads from.
func (r *Redis) dumpFile() string { return filepath.Join(r.dir, fmt.Sprintf("dump-%d.rdb", r.Port)) }

// Kill stops the server abruptly without starting it again.
func (r *Redis) Kill() { r.proc.stop(0) }

// Stop kills the server and removes its folder if this package made it.
func (r *Redis) Stop() {
	r.proc.stop(5 * time.Second)
	if r.owned {
		_ = os.RemoveAll(r.dir)
	}
}

func execSQL(dsn, stmt string) error {
	conn, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Exec(stmt)
	return err
}

// waitRedis pings addr until it answers, or fails with the server's log when the process exits or
// 20 s pass.
func waitRedis(ctx context.Context, addr string, proc *process, logFile, what string) error {
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			proc.stop(time.Second)
			return fmt.Errorf("%s did not start: %v; log: %s", what, err, tail(logFile, 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
