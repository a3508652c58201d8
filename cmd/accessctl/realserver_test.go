package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
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

// realServer is the engine's HTTP API (adapters/httpapi) on in-memory
// SQLite with the real command service, access index and ledger (its tree
// kept by the projections runner, verified at start, signing a checkpoint
// whenever asked), so that the ledger's verbs are tested against real
// checkpoints and proofs.
type realServer struct {
	url    string
	secret []byte
	db     *sqldb.DB
	store  *sqlstore.Store
	runner *projections.Runner
	ledger *ledger.Ledger
	key    *ledger.Key // the ledger's signing key
}

func newRealServer(t *testing.T) *realServer {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.NoError(t, sqlstore.Migrate(ctx, db))
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = securitylog.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, securitylog.Component, pg, lite))
	pg, lite = idempotency.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, idempotency.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
	store, err := sqlstore.New(ctx, db)
	require.NoError(t, err)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := commands.New(store, securitylog.New(db), commands.Config{Logger: quiet})
	require.NoError(t, err)
	runner, err := projections.NewRunner(db.DB, store, []projections.Projection{ledger.New()}, projections.WithLogger(quiet))
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
	waitCtx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	require.NoError(t, runner.WaitCaughtUp(waitCtx))
	_, err = led.Guard(ctx, store, ledger.VerifyOptions{})
	require.NoError(t, err)

	secret := bytes.Repeat([]byte{9}, auth.MinSecretBytes)
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(t, err)
	qs, err := queries.New(queries.Config{Index: index, History: accesshistory.NewReader(db), Accounts: accounts.NewReader(db),
		Audit: audit.NewReader(db), SecurityLog: securitylog.New(db), ChildRecords: queries.ChildrenFromLog(store),
		Refusals: securitylog.New(db), Progress: runner.Status, Logger: quiet, Ledger: led, LedgerLog: store})
	require.NoError(t, err)
	h, err := httpapi.New(httpapi.Config{Commands: svc, Queries: qs, Auth: verifier, Idempotency: idempotency.New(db),
		Ready: func() bool { return true }, Logger: quiet})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
		_ = store.Close()
	})
	return &realServer{url: srv.URL, secret: secret, db: db, store: store, runner: runner, ledger: led, key: key}
}

// env is the environment of a run as role.
func (s *realServer) env(t *testing.T, role domain.Role) map[string]string {
	t.Helper()
	tok, err := auth.Mint(s.secret, auth.Claims{Subject: string(role) + "-1", Role: role, TTL: time.Hour}, time.Now())
	require.NoError(t, err)
	return map[string]string{envServer: s.url, envToken: tok}
}

// registerChildren registers n children through accessctl and waits until
// the ledger's tree has every event; it returns the log's records.
func (s *realServer) registerChildren(t *testing.T, n int) []eventlog.Record {
	t.Helper()
	for i := 0; i < n; i++ {
		res := runCLI(t, s.env(t, domain.RoleWorker), "register-child", "--reference", "NCC-"+time.Now().Format("150405.000000000"))
		require.Equal(t, exitOK, res.code, res.stderr)
	}
	ctx := context.Background()
	head, err := s.store.Head(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, st := range s.runner.Status() {
			if st.Position.Before(head) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	recs, err := s.store.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}
