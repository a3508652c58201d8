package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// The whole end-to-end suite runs on EventStoreDB too (e2eBackends); these
// tests cover what only that run mode has.

func TestServe_EventStoreDBNeedsReadStore(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t)
	code, out, errOut := runCmd(t, context.Background(), noEnv, "serve", "--data-dir", privateDir(t), "--addr", "127.0.0.1:0",
		"--event-store", srv.URL())
	require.Equal(t, exitUsage, code, out+errOut)
	require.Contains(t, errOut, "--read-store")
}

func TestServe_EventStoreDBUnreachable(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t)
	url := srv.URL()
	srv.Stop()
	start := time.Now()
	code, out, errOut := runCmd(t, context.Background(), noEnv, "status", "--data-dir", privateDir(t), "--event-store", url)
	require.Equal(t, exitError, code, out+errOut)
	require.Contains(t, errOut, "unavailable")
	require.Less(t, time.Since(start), 2*time.Minute)
}

// TestServe_EventStoreDBOutage: while the event store is down, commands
// answer 503 and append nothing, checks keep answering from the index; once
// it is back, the same command (same Idempotency-Key) goes through once,
// the engine follows the log again, and a restarted engine sees it all.
func TestServe_EventStoreDBOutage(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t)
	s := startServer(t, "--event-store", srv.URL(), "--read-store", sqltest.Postgres(t))
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account(string(domain.KindFosterCarer))
	member := w.account(string(domain.KindNetworkMember))
	w.place(child, carer.id, now().Add(-day))
	requireAccess(t, w.check(carer.id, child, "view"), true, "placement")
	before := s.head()

	srv.Stop()
	grants := "/v1/children/" + child + "/grants"
	body := map[string]any{"account_id": member.id, "relationship": "network_member", "permissions": []string{"view"}, "reason": "aunt"}
	r := w.worker.do("POST", grants, body, "Idempotency-Key", "grant-aunt-1")
	p := r.problem(http.StatusServiceUnavailable, "internal")
	require.Contains(t, p.Detail, "event store is unavailable")
	requireAccess(t, w.check(carer.id, child, "view"), true, "placement", "checks answer from the index meanwhile")
	requireAccess(t, w.check(member.id, child, "view"), false, "no_relationship")

	srv.Restart(t)
	require.Equal(t, before, s.head(), "the refused command appended nothing")
	// The client reconnects in the background: retry, as a 503 says to.
	var m *e2eResp
	require.Eventually(t, func() bool {
		m = w.worker.do("POST", grants, body, "Idempotency-Key", "grant-aunt-1")
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, m.status, m.String())
		return m.status == http.StatusOK
	}, e2eWait, 100*time.Millisecond)
	w.note(m.json())
	again := w.worker.do("POST", grants, body, "Idempotency-Key", "grant-aunt-1")
	require.Equal(t, http.StatusOK, again.status, again.String())
	require.Equal(t, before+1, s.head(), "one grant, whatever the retries")
	requireAccess(t, w.check(member.id, child, "view"), true, "grant", "the index follows the log again")

	s.restart()
	requireAccess(t, w.check(member.id, child, "view"), true, "grant", "after a restart of the engine")
	requireAccess(t, w.check(carer.id, child, "view"), true, "placement")
	entries := w.audit("")
	require.EqualValues(t, s.head(), len(entries), "one audit entry per event")
}
