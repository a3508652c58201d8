package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/projtest"
)

// seed appends a small history, made through the domain aggregates, to the
// embedded default store in dir, and returns how many events it holds.
func seed(t *testing.T, dir string) int {
	t.Helper()
	code, _, errOut := runCmd(t, context.Background(), noEnv, "migrate", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, engine.DefaultDBName))
	require.NoError(t, err)
	defer db.Close()
	st, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	defer st.Close()

	w := projtest.New(t.Fatalf)
	child := w.RegisterChild()
	carer, member := w.Carer(), w.Member()
	pl := w.Place(child, carer, w.Now)
	w.Grant(child, member, domain.PermView)
	w.Advance(48 * time.Hour)
	w.End(child, pl, w.Now)
	w.EnrolPhone(carer, "+44 7700 900123")
	for _, r := range w.Records {
		_, err := st.Append(ctx, r.Stream, eventlog.Any, []eventlog.EventData{{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}})
		require.NoError(t, err)
	}
	return len(w.Records)
}

func TestAuditVerifyAndRebuild(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	n := seed(t, dir)
	ctx := context.Background()

	code, out, errOut := runCmd(t, ctx, noEnv, "audit", "verify", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "audit trail OK: ")
	require.Contains(t, out, " entries")
	require.Contains(t, out, strconv.Itoa(n)+" entries", "verify first brings the trail up to the head of the log")

	code, out, errOut = runCmd(t, ctx, noEnv, "rebuild", "--data-dir", dir, "--projection", "access_history")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "rebuilt access_history")
	require.Contains(t, out, "rebuild access_history: ", "plain progress lines when not on a terminal")

	code, _, errOut = runCmd(t, ctx, noEnv, "rebuild", "--data-dir", dir, "--projection", "nope")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `unknown projection "nope"`)

	// Tamper with one entry: verify names it and exits 1.
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, engine.DefaultDBName))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "UPDATE audit_entries_g1 SET reason = 'nothing to see' WHERE seq = 3")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	code, out, _ = runCmd(t, ctx, noEnv, "audit", "verify", "--data-dir", dir)
	require.Equal(t, exitError, code)
	require.Contains(t, out, "BROKEN at entry 3")

	// After a rebuild of the trail from the log, it verifies again.
	code, _, errOut = runCmd(t, ctx, noEnv, "rebuild", "--data-dir", dir, "--projection", "audit")
	require.Equal(t, exitOK, code, errOut)
	code, out, errOut = runCmd(t, ctx, noEnv, "audit", "verify", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "audit trail OK")

	code, _, errOut = runCmd(t, ctx, noEnv, "audit", "verify", "--data-dir", dir, "--anchor", "x")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--anchor")
}

func TestServeBecomesReady(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	seed(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb syncBuffer
	go func() {
		done <- run(ctx, []string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0"}, &out, &errb, noEnv)
	}()
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "ready: read models and access index caught up") },
		30*time.Second, 20*time.Millisecond, errb.String())
	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
