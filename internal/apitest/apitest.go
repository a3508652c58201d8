// Package apitest starts the engine's real HTTP API in process, for the
// tests of its clients (package client, accessctl): the command service,
// the query service, the access index, the projections runner with the
// read models and the ledger's tree, a ledger (verified at start, signing
// a checkpoint whenever asked), the security log and idempotency keys, all
// on an in-memory SQLite database with the event log in memory. Requests
// are authenticated with tokens signed by Server.Secret.
package apitest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/queries"
)

// Server is a running API.
type Server struct {
	URL    string
	Secret []byte
	DB     *sqldb.DB
	Store  *memstore.Store
	Runner *projections.Runner
	Index  *accessindex.Index
	Ledger *ledger.Ledger
	Key    *ledger.Key // the ledger's signing key
	// Handler is the served handler, for benchmarks without a network.
	Handler http.Handler
}

// Start starts the API behind an httptest.Server whose handler is
// wrapped by wrap (nil: none, e.g. a contract check) and stops it when the
// test ends.
func Start(t testing.TB, wrap func(http.Handler) http.Handler) *Server {
	t.Helper()
	return StartWith(t, Options{Wrap: wrap})
}

// Options configure StartWith.
type Options struct {
	// Wrap wraps the handler (nil: none).
	Wrap func(http.Handler) http.Handler
	// Console, when set, serves the auditor's console at /console with
	// this configuration; its Queries, SecurityLog, LinkSecret and Ledger
	// are the server's.
	Console *console.Config
	// Clock is the query service's time (nil: time.Now).
	Clock func() time.Time
	// Seed, when set, fills the event log before the read models start
	// (a generated county, say); StartWith then waits up to half an hour
	// for them to catch up.
	Seed func(ctx context.Context, store *memstore.Store) error
}

// StartWith starts the API with opts.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	wrap := opts.Wrap
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = securitylog.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, securitylog.Component, pg, lite))
	pg, lite = viewlog.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, viewlog.Component, pg, lite))
	pg, lite = idempotency.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, idempotency.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
	store := memstore.New()
	catchUp := 30 * time.Second
	if opts.Seed != nil {
		require.NoError(t, opts.Seed(ctx, store))
		catchUp = 30 * time.Minute
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := commands.New(store, securitylog.New(db), commands.Config{Logger: quiet})
	require.NoError(t, err)
	runner, err := projections.NewRunner(db.DB, store,
		[]projections.Projection{accesshistory.New(), audit.New(), accounts.New(), ledger.New()}, projections.WithLogger(quiet))
	require.NoError(t, err)
	index := accessindex.New(accessindex.WithLogger(quiet))
	dir := t.TempDir()
	key, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(t, err)
	led, err := ledger.NewLedger(ledger.Config{DB: db, Key: key, Dir: filepath.Join(dir, "checkpoints"), MaxAge: time.Nanosecond,
		Instance: "test", Logger: quiet})
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = runner.Run(runCtx) }()
	go func() { defer wg.Done(); _ = index.Run(runCtx, store) }()
	waitCtx, wcancel := context.WithTimeout(ctx, catchUp)
	defer wcancel()
	require.NoError(t, runner.WaitCaughtUp(waitCtx))
	select {
	case <-index.Ready():
	case <-waitCtx.Done():
		t.Fatal("the access index did not catch up")
	}
	_, err = led.Guard(ctx, store, ledger.VerifyOptions{})
	require.NoError(t, err)

	secret := bytes.Repeat([]byte{9}, auth.MinSecretBytes)
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(t, err)
	qs, err := queries.New(queries.Config{Index: index, History: accesshistory.NewReader(db), Accounts: accounts.NewReader(db),
		Audit: audit.NewReader(db, nil), SecurityLog: securitylog.New(db), Views: viewlog.New(db), ChildRecords: queries.ChildrenFromLog(store),
		Refusals: securitylog.New(db), Progress: runner.Status, Logger: quiet, Ledger: led, LedgerLog: store,
		Policy: svc.Policy(), Policies: svc,
		MinPositionWait: 10 * time.Second, Clock: opts.Clock})
	require.NoError(t, err)
	hcfg := httpapi.Config{Commands: svc, Queries: qs, Auth: verifier, Idempotency: idempotency.New(db),
		Ready: func() bool { return true }, Logger: quiet, WatchHeartbeat: 50 * time.Millisecond}
	if opts.Console != nil {
		ccfg := *opts.Console
		ccfg.Queries, ccfg.SecurityLog, ccfg.LinkSecret = qs, securitylog.New(db), secret
		ccfg.Ledger = ledger.Checker{Ledger: led, Log: store}
		if ccfg.Logger == nil {
			ccfg.Logger = quiet
		}
		c, err := console.New(ccfg)
		require.NoError(t, err)
		hcfg.Console = c
	}
	h, err := httpapi.New(hcfg)
	require.NoError(t, err)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		wg.Wait()
	})
	return &Server{URL: srv.URL, Secret: secret, DB: db, Store: store, Runner: runner, Index: index, Ledger: led, Key: key, Handler: h}
}

// Token returns a bearer token of sub acting in role, valid for an hour.
func (s *Server) Token(t testing.TB, role domain.Role, sub string) string {
	t.Helper()
	tok, err := auth.Mint(s.Secret, auth.Claims{Subject: sub, Role: role, TTL: time.Hour}, time.Now())
	require.NoError(t, err)
	return tok
}

// CaughtUp waits until every read model has applied the whole log.
func (s *Server) CaughtUp(t testing.TB) {
	t.Helper()
	head, err := s.Store.Head(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, st := range s.Runner.Status() {
			if st.Position.Before(head) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// Log returns the event log's records.
func (s *Server) Log(t testing.TB) []eventlog.Record {
	t.Helper()
	recs, err := s.Store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}
