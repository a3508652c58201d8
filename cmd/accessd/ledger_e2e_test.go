package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/ledger"
)

// ledgerServer starts serve signing a checkpoint as soon as the log grows.
func ledgerServer(t *testing.T, store []string) *e2eServer {
	return startServer(t, append(append([]string{}, store...), "--checkpoint-every", "1", "--checkpoint-interval", "1s")...)
}

// grantHistory records a parent's view-only grant on a child and returns
// the world, the child and the parent.
func grantHistory(t *testing.T, s *e2eServer) (*e2eWorld, string, e2eAccount) {
	w := newWorld(s)
	child := w.registerChild()
	parent := w.account(string(domain.KindParent))
	w.grant(w.worker, child, parent.id, "parent", []string{"view"}, "contact arrangement")
	requireAccess(t, w.check(parent.id, child, "view"), true, "grant")
	requireAccess(t, w.check(parent.id, child, "record"), false, "grant")
	return w, child, parent
}

// waitForCheckpoint waits until the checkpoint directory holds a
// checkpoint of the whole log (n events).
func waitForCheckpoint(t *testing.T, s *e2eServer, n uint64) {
	t.Helper()
	dir := filepath.Join(s.dir, "checkpoints")
	require.Eventually(t, func() bool {
		notes, err := ledger.ReadCheckpointDir(dir, 0)
		if err != nil {
			return false
		}
		for _, sn := range notes {
			if strings.Contains(string(sn.Note), "\n"+itoa(n)+"\n") {
				return true
			}
		}
		return false
	}, e2eWait, 20*time.Millisecond, "no checkpoint of %d events in %s", n, dir)
}

func itoa(n uint64) string { return eventlog.At(n).String() }

// ledgerVerify runs accessd ledger verify on the server's stores.
func ledgerVerify(t *testing.T, s *e2eServer, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"ledger", "verify", "--data-dir", s.dir, "--log-level", "error"}, s.storeFlags()...)
	code, out, errOut := runCmd(t, context.Background(), noEnv, append(args, extra...)...)
	return code, out + errOut
}

// requireRefusesDecisions starts the server on its tampered store and
// requires it never to become ready nor to answer a check, naming pos.
func requireRefusesDecisions(t *testing.T, s *e2eServer, w *e2eWorld, child string, parent e2eAccount, pos string) {
	t.Helper()
	s.unready = true
	s.start()
	var ready *e2eResp
	require.Eventually(t, func() bool {
		ready = s.anonymous().do("GET", "/readyz", nil)
		return ready.status == http.StatusServiceUnavailable && strings.Contains(ready.String(), "position "+pos)
	}, e2eWait, 20*time.Millisecond, "readyz should name the first bad position %s", pos)
	r := w.service.do("GET", "/v1/check?account_id="+parent.id+"&child_id="+child+"&permission=record", nil)
	p := r.problem(http.StatusServiceUnavailable, "ledger_mismatch")
	require.Contains(t, p.Detail, pos)
	// The alert's line reaches the server's log a moment after the state
	// that refuses decisions is set.
	require.Eventually(t, func() bool { return strings.Contains(s.logText(), "ALERT ledger") }, e2eWait, 20*time.Millisecond,
		"the server logs the ledger's alert")
	// Still not ready a moment later: no retry turns it green.
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, s.anonymous().do("GET", "/readyz", nil).status)
	s.stop()
}

func TestRule_R23_EditedGrantIsNamedAndServesNoDecision(t *testing.T) {
	t.Parallel()
	for _, b := range e2eBackends()[:2] { // SQL stores; EventStoreDB below
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := ledgerServer(t, b.flags(t))
			w, child, parent := grantHistory(t, s)
			n := s.head()
			waitForCheckpoint(t, s, n)
			s.stop()

			code, out := ledgerVerify(t, s)
			require.Equal(t, exitOK, code, out)
			require.Contains(t, out, "OK: the log's "+itoa(n)+" events")

			db := s.openDB()
			var pos int64
			require.NoError(t, db.NewSelect().Table("events").Column("position").
				Where("type = ?", domain.TypeAccessGranted).Scan(context.Background(), &pos))
			widen := `UPDATE events SET data = replace(data, '["view"]', '["view","record"]'), actor_id = 'worker-mallory' WHERE type = ?`
			if db.IsPostgres() {
				widen = `UPDATE events SET data = replace(data::text, '["view"]', '["view","record"]')::json, actor_id = 'worker-mallory' WHERE type = ?`
			}
			res, err := db.ExecContext(context.Background(), widen, domain.TypeAccessGranted)
			require.NoError(t, err)
			rows, _ := res.RowsAffected()
			require.EqualValues(t, 1, rows)
			p := eventlog.At(uint64(pos)).String()

			code, out = ledgerVerify(t, s)
			require.Equal(t, exitError, code, out)
			require.Contains(t, out, "FAILED: edited at position "+p, out)

			code, out = runCmd3(t, append([]string{"rebuild", "--data-dir", s.dir, "--log-level", "error"}, s.storeFlags()...)...)
			require.Equal(t, exitError, code, out)
			require.Contains(t, out, "rebuild refused")

			requireRefusesDecisions(t, s, w, child, parent, p)
		})
	}
}

// runCmd3 runs accessd and returns its exit code and both outputs.
func runCmd3(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, errOut := runCmd(t, context.Background(), noEnv, args...)
	return code, out + errOut
}

func TestRule_R23_RewrittenLogAndReadModelsAreCaughtByTheCheckpointFile(t *testing.T) {
	t.Parallel()
	s := ledgerServer(t, nil)
	w, child, parent := grantHistory(t, s)
	n := s.head()
	waitForCheckpoint(t, s, n)
	s.stop()

	// Someone with the database (not the checkpoint directory) edits the
	// grant, deletes the database's copies of the checkpoints and rebuilds
	// every read model, the tree included, from the edited log.
	ctx := context.Background()
	db := s.openDB()
	_, err := db.ExecContext(ctx, `UPDATE events SET data = replace(data, '["view"]', '["view","record"]') WHERE type = ?`, domain.TypeAccessGranted)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "DELETE FROM ledger_checkpoints")
	require.NoError(t, err)
	st, err := engine.OpenStores(ctx, &engine.Config{DataDir: s.dir}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for _, p := range engine.ReadModels() {
		require.NoError(t, projections.Rebuild(ctx, st.Read.DB, st.LogFor(p.Name()), p, nil))
	}
	require.NoError(t, st.Close())

	code, out := ledgerVerify(t, s)
	require.Equal(t, exitError, code, out)
	require.Contains(t, out, "FAILED: checkpoint", out)
	require.Contains(t, out, "checkpoint-", "names the checkpoint file that caught it")

	s.unready = true
	s.start()
	require.Eventually(t, func() bool {
		return strings.Contains(s.anonymous().do("GET", "/readyz", nil).String(), "ledger_mismatch")
	}, e2eWait, 20*time.Millisecond)
	w.service.do("GET", "/v1/check?account_id="+parent.id+"&child_id="+child+"&permission=record", nil).
		problem(http.StatusServiceUnavailable, "ledger_mismatch")
	s.stop()
}

func TestRule_R23_EventStoreDB(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t)
	store := []string{"--event-store", srv.URL(), "--read-store", sqltest.Postgres(t)}
	s := ledgerServer(t, store)
	w, child, parent := grantHistory(t, s)
	n := s.head()
	waitForCheckpoint(t, s, n)
	s.stop()

	code, out := ledgerVerify(t, s)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "OK: the log's "+itoa(n)+" events")

	es, err := eventstoredb.Open(context.Background(), srv.URL(), eventstoredb.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	recs, err := es.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	require.NoError(t, es.Close())
	var grant eventlog.Record
	for _, r := range recs {
		if r.Type == domain.TypeAccessGranted {
			grant = r
		}
	}
	require.NotEmpty(t, grant.Type)
	require.True(t, srv.ReplaceData(grant.ID, []byte(strings.Replace(string(grant.Data), `["view"]`, `["view","record"]`, 1))))

	code, out = ledgerVerify(t, s)
	require.Equal(t, exitError, code, out)
	require.Contains(t, out, "FAILED: edited at position "+grant.Position.String(), out)
	requireRefusesDecisions(t, s, w, child, parent, grant.Position.String())
}

func TestLedgerVerifyAlwaysEndsWithAVerdict(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	seed(t, dir)
	ctx := context.Background()
	// The ledger's tree is built by serve or a rebuild; none yet.
	_, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(t, err)
	code, out := runCmd3(t, "rebuild", "--data-dir", dir, "--projection", "ledger", "--log-level", "error")
	require.Equal(t, exitOK, code, out)
	code, out = runCmd3(t, "ledger", "verify", "--data-dir", dir, "--log-level", "error")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "\nOK: ")

	// The newest event deleted: named, no retry loop.
	db := sqltest.Open(t, "sqlite:"+filepath.Join(dir, engine.DefaultDBName))
	var head int64
	require.NoError(t, db.NewSelect().Table("events").ColumnExpr("MAX(position)").Scan(ctx, &head))
	_, err = db.ExecContext(ctx, "DELETE FROM events WHERE position = ?", head)
	require.NoError(t, err)
	code, out = runCmd3(t, "ledger", "verify", "--data-dir", dir, "--log-level", "error")
	require.Equal(t, exitError, code, out)
	require.Contains(t, out, "FAILED: truncated at position "+eventlog.At(uint64(head)).String())
	code, out = runCmd3(t, "audit", "verify", "--data-dir", dir, "--log-level", "error")
	require.Equal(t, exitError, code, out)
	require.Contains(t, out, "FAILED")

	// A missing key is a verdict too.
	code, out = runCmd3(t, "ledger", "verify", "--data-dir", dir, "--ledger-key", filepath.Join(dir, "nope"), "--log-level", "error")
	require.Equal(t, exitError, code, out)
	require.Contains(t, out, "FAILED: no key")
}

// TestVerifyOnADamagedSQLiteFileEndsWithAVerdict: a page of the database
// zeroed (the events table's root) makes both verifies answer FAILED at
// once, never a retry loop.
func TestVerifyOnADamagedSQLiteFileEndsWithAVerdict(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	seed(t, dir)
	_, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(t, err)
	code, out := runCmd3(t, "rebuild", "--data-dir", dir, "--log-level", "error")
	require.Equal(t, exitOK, code, out)

	ctx := context.Background()
	path := filepath.Join(dir, engine.DefaultDBName)
	db := sqltest.Open(t, "sqlite:"+path)
	var root, pageSize int64
	require.NoError(t, db.QueryRowContext(ctx, "SELECT rootpage FROM sqlite_schema WHERE name = 'events'").Scan(&root))
	require.NoError(t, db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize))
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, pageSize), (root-1)*pageSize)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	for _, cmd := range [][]string{{"ledger", "verify"}, {"audit", "verify"}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code, out, errOut := runCmd(t, ctx, noEnv, append(cmd, "--data-dir", dir, "--log-level", "error")...)
		cancel()
		require.Equal(t, exitError, code, out+errOut)
		require.Contains(t, out, "FAILED", out+errOut)
	}
}

// TestRule_R23_OldEventEditedIsCaughtAfterAStartFromSnapshots: an event
// edited while the engine was stopped, older than the snapshots of the
// index and of the access history, is not in the tail a start from those
// snapshots reads nor checks before ready; the background check of the
// whole stored log finds it: the engine turns (or stays) not ready, every
// decision answers 503 ledger_mismatch naming the first bad position, and
// an ALERT is logged. Commands, which read the log's streams themselves,
// never answer from the changed log meanwhile.
func TestRule_R23_OldEventEditedIsCaughtAfterAStartFromSnapshots(t *testing.T) {
	t.Parallel()
	for _, b := range e2eBackends()[:2] {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, append(b.flags(t), "--checkpoint-every", "1", "--checkpoint-interval", "1s",
				"--snapshot-every", "1", "--snapshot-interval", "1s")...)
			w, child, parent := grantHistory(t, s)
			other := w.account(string(domain.KindFosterCarer)) // after the grant: the grant is old
			w.place(child, other.id, now().Add(-time.Hour))
			n := s.head()
			waitForCheckpoint(t, s, n)
			for _, snap := range []struct {
				file   string
				decode func([]byte) (eventlog.Position, error)
			}{{accessindex.SnapshotFile, accessindex.DecodeSnapshot}, {accesshistory.SnapshotFile, accesshistory.DecodeSnapshot}} {
				require.Eventually(t, func() bool {
					data, err := os.ReadFile(filepath.Join(s.dir, snap.file))
					if err != nil {
						return false
					}
					pos, err := snap.decode(data)
					return err == nil && pos.Commit == n
				}, e2eWait, 20*time.Millisecond, "a snapshot %s at the head", snap.file)
			}
			s.stop()

			db := s.openDB()
			var pos int64
			require.NoError(t, db.NewSelect().Table("events").Column("position").
				Where("type = ?", domain.TypeAccessGranted).Scan(context.Background(), &pos))
			require.Less(t, uint64(pos), n, "the grant is older than the snapshots")
			widen := `UPDATE events SET data = replace(data, '["view"]', '["view","record"]') WHERE type = ?`
			if db.IsPostgres() {
				widen = `UPDATE events SET data = replace(data::text, '["view"]', '["view","record"]')::json WHERE type = ?`
			}
			_, err := db.ExecContext(context.Background(), widen, domain.TypeAccessGranted)
			require.NoError(t, err)
			p := eventlog.At(uint64(pos)).String()

			s.unready = true
			s.start()
			var ready *e2eResp
			require.Eventually(t, func() bool {
				ready = s.anonymous().do("GET", "/readyz", nil)
				return ready.status == http.StatusServiceUnavailable && strings.Contains(ready.String(), "position "+p)
			}, e2eWait, 20*time.Millisecond, "readyz should name the first bad position %s", p)
			logs := s.logText()
			require.Contains(t, logs, "access index loaded from its snapshot")
			require.Contains(t, logs, "access history loaded from its snapshot")
			require.Contains(t, logs, "check=\"start-up check\"", "the tail passed before ready")
			require.Contains(t, logs, "ALERT ledger")
			require.Contains(t, logs, "background check of the whole log")
			r := w.service.do("GET", "/v1/check?account_id="+parent.id+"&child_id="+child+"&permission=record", nil)
			require.Contains(t, r.problem(http.StatusServiceUnavailable, "ledger_mismatch").Detail, p)
			r = w.service.do("POST", "/v1/children/"+child+"/grants/"+parent.id+"/revoke", map[string]any{"reason": "x"})
			require.Equal(t, http.StatusServiceUnavailable, r.status, r.String())
			time.Sleep(200 * time.Millisecond)
			require.Equal(t, http.StatusServiceUnavailable, s.anonymous().do("GET", "/readyz", nil).status)
			s.stop()
		})
	}
}
