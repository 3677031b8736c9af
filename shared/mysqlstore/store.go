// Package mysqlstore is the MySQL adapter: campaign and user rules with their outbox, points entries,
// the claim ledger and sync failures. The schema is embedded as versioned migrations applied on start.
// Every statement uses placeholders. Functions on FC are short-lived instances; each holds a small pool.
package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/benefit-issuance/benefits/shared/fault"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Options size the connection pool.
type Options struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// Store is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// Open connects, pings and migrates. The DSN's parseTime and loc=UTC are forced, because every time
// column holds UTC.
func Open(ctx context.Context, dsn string, opts ...Options) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("mysql dsn: %w", err))
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	o := Options{MaxOpenConns: 16, MaxIdleConns: 8, ConnMaxLifetime: 5 * time.Minute}
	if len(opts) > 0 {
		o = opts[0]
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fault.Permanent(err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxIdleConns)
	db.SetConnMaxLifetime(o.ConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, classify(fmt.Errorf("mysql ping: %w", err))
	}
	s := &Store{db: db}
	if err := s.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// DB exposes the pool for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// Close releases the pool.
func (s *Store) Close() error { return s.db.Close() }

// Migrate applies the embedded migrations not yet recorded, under a named lock so that instances
// starting together apply each once.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return classify(err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('benefits_migrate', 60)").Scan(&got); err != nil {
		return classify(err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fault.Retryable(errors.New("mysql: another instance holds the migration lock"))
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('benefits_migrate')")
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,
		applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB`); err != nil {
		return classify(err)
	}
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		version, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", version).Scan(&n); err != nil {
			return classify(err)
		}
		if n > 0 {
			continue
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(string(body)) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return classify(fmt.Errorf("migration %s: %w", e.Name(), err))
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", version, e.Name()); err != nil {
			return classify(err)
		}
	}
	return nil
}

// splitStatements splits a migration on semicolons that end a line, dropping comment-only lines.
func splitStatements(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, stmt)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// MySQL error numbers we act on. Those about the data are permanent; the rest of what a server says is
// treated as passing (see classify).
const (
	errDupEntry        = 1062
	errDataTooLong     = 1406
	errBadNull         = 1048
	errNoReferencedRow = 1452
	errRowIsReferenced = 1451
	errTruncatedValue  = 1292
	errOutOfRange      = 1264
	errIncorrectValue  = 1366
	errNoSuchTable     = 1146
	errBadField        = 1054
	errParse           = 1064
)

// classify marks driver errors once, here: a lost connection, a timeout, a deadlock or a lock wait may
// pass; a constraint or data error will not.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		// Only errors about the data itself are permanent; anything else the server says (a killed
		// connection, an interrupted query, a failover, a resource limit) may pass, and retrying a
		// permanent one costs only time while parking a transient one loses a change.
		switch me.Number {
		case errDupEntry, errDataTooLong, errBadNull, errNoReferencedRow, errRowIsReferenced, errTruncatedValue,
			errOutOfRange, errIncorrectValue, errNoSuchTable, errBadField, errParse:
			return fault.Permanent(err)
		}
		return fault.Retryable(err)
	}
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.As(err, &ne) {
		return fault.Retryable(err)
	}
	if fault.IsRetryable(err) {
		return fault.Retryable(err)
	}
	return err
}

func isDup(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errDupEntry
}

// inTx runs f in a transaction, committing when f succeeds.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return classify(tx.Commit())
}
