package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"

	"github.com/accessledger/accessledger/domain"
)

// TestRule_R3_ExpiryAfterTheServerWasDownAcrossTheDeadline: the deadlines
// are durable; a server stopped across a grace deadline writes the expiry
// event at once when it starts again, exactly once.
func TestRule_R3_ExpiryAfterTheServerWasDownAcrossTheDeadline(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--grace-period", "2s")...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, carer.id, now().Add(-day))
		graceUntil := w.endPlacement(w.worker, child, pl, now(), "moved")

		s.stop()
		if d := time.Until(graceUntil.Add(100 * time.Millisecond)); d > 0 {
			time.Sleep(d) // the deadline passes while the server is down
		}
		s.start()

		require.Eventually(t, func() bool {
			return len(auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)) >= 1
		}, e2eWait, 100*time.Millisecond)
		expired := auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)
		require.Len(t, expired, 1, "exactly one expiry event per placement end")
		require.True(t, graceUntil.Equal(expired[0].EffectiveAt), "effective at the deadline, though written late")
		require.Equal(t, "system", expired[0].ActorRole)
	})
}

// TestProcessManagerOnThePostgresBus runs the engine with --bus postgres://
// (watermill-sql): the relay publishes to PostgreSQL, the process manager
// consumes from it and records the expiry at the deadline.
func TestProcessManagerOnThePostgresBus(t *testing.T) {
	t.Parallel()
	busURL := sqltest.Postgres(t)
	s := startServer(t, "--grace-period", "1s", "--bus", busURL)
	require.Contains(t, s.logText(), "bus=postgres")
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account(string(domain.KindFosterCarer))
	pl := w.place(child, carer.id, now().Add(-day))
	graceUntil := w.endPlacement(w.worker, child, pl, now(), "moved")
	require.Eventually(t, func() bool {
		return len(auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)) == 1
	}, e2eWait, 100*time.Millisecond)
	e := auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)[0]
	require.True(t, graceUntil.Equal(e.EffectiveAt))
}
