package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/ledger"
)

// TestScaleOut_OneReplicaPublishes runs two replicas of serve on one
// PostgreSQL store and the PostgreSQL bus, as docs/operations.md deploys
// them: one holds the outbox lease and publishes, the other stands by, so
// every event is on the bus once; the deadlines fire whichever replica's
// process manager takes them; when the holder stops, the other takes the
// lease over and publishes from its checkpoint, still once per event.
func TestScaleOut_OneReplicaPublishes(t *testing.T) {
	t.Parallel()
	store, busURL := sqltest.Postgres(t), sqltest.Postgres(t)
	secretDir := privateDir(t)
	secret, err := auth.LoadOrCreateSecret(secretDir)
	require.NoError(t, err)
	common := []string{"--event-store", store, "--bus", busURL, "--grace-period", "1s",
		"--secret-file", filepath.Join(secretDir, auth.SecretFileName),
		// Every replica signs the ledger's checkpoints with the same key.
		"--ledger-key", filepath.Join(secretDir, ledger.KeyFileName),
		// and wraps the data subjects' keys with the same master key.
		"--master-key", filepath.Join(secretDir, keystore.MasterKeyFileName)}
	cps := outbox.NewCheckpoints(sqltest.Open(t, store).DB)
	busDB := sqltest.Open(t, busURL)

	a := startServer(t, append(slices.Clone(common), "--instance-id", "api-a")...)
	a.secret = secret
	waitLeaseHolder(t, cps, "api-a")
	b := startServer(t, append(slices.Clone(common), "--instance-id", "api-b")...)
	b.secret = secret
	require.Eventually(t, func() bool { return strings.Contains(b.logText(), "standing by") }, e2eWait, 20*time.Millisecond,
		"the second replica stands by")

	// Commands on both replicas; the deadline fires once.
	expireOne := func(via, other *e2eServer) (check func()) {
		t.Helper()
		w, o := newWorld(via), newWorld(other)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, carer.id, now().Add(-day))
		w.endPlacement(w.worker, child, pl, now(), "moved")
		o.last = w.last // read our writes on the other replica
		expired := func() int { return len(auditOf(o.audit("child_id="+child), domain.TypeGraceExpired)) }
		require.Eventually(t, func() bool { return expired() >= 1 }, e2eWait, 100*time.Millisecond)
		return func() { require.Equal(t, 1, expired(), "one expiry, whichever replica fired it") }
	}
	once := expireOne(a, b)
	requirePublishedOnce(t, busDB, a)
	once()
	require.NotContains(t, b.logText(), "lease taken")

	// The holder stops: the other replica takes over from its checkpoint.
	a.stop()
	waitLeaseHolder(t, cps, "api-b")
	once = expireOne(b, b)
	requirePublishedOnce(t, busDB, b)
	once()
	owner, _, err := cps.Lease(context.Background(), outbox.DefaultRelayName)
	require.NoError(t, err)
	require.Equal(t, "api-b", owner)
}

// waitLeaseHolder waits until owner holds the lease of both publishers.
func waitLeaseHolder(t *testing.T, cps *outbox.Checkpoints, owner string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, name := range []string{outbox.DefaultRelayName, outbox.DefaultAccessName} {
			got, until, err := cps.Lease(context.Background(), name)
			if err != nil || got != owner || !until.After(time.Now()) {
				return false
			}
		}
		return true
	}, e2eWait, 20*time.Millisecond, "%s never held the outbox lease", owner)
}

// requirePublishedOnce waits until every event of s's log is on the bus,
// and requires each there once: the rows of the events topic's table
// (watermill-sql keeps every message) against the log's head.
func requirePublishedOnce(t *testing.T, busDB *sqldb.DB, s *e2eServer) {
	t.Helper()
	table := `"watermill_` + bus.TopicEvents + `"`
	var rows, distinct uint64
	head := s.head()
	require.Eventually(t, func() bool {
		err := busDB.QueryRowContext(context.Background(), "SELECT count(*), count(DISTINCT uuid) FROM "+table).Scan(&rows, &distinct)
		return err == nil && rows >= head
	}, e2eWait, 50*time.Millisecond, "events on the bus: %d of %d", rows, head)
	require.Equal(t, head, rows, "every event published once (%d distinct)", distinct)
	require.Equal(t, rows, distinct)
}
