package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R19_AGrantThatEndsWhileTheServerIsDown: a time-limited grant
// answers grant (with its expires_at) until then and grant_expired after,
// whether or not the expiry is recorded; an expiry whose time passed while
// the server was down is recorded once at start-up, effective at
// expires_at, by the engine. An open-ended grant is due for review the
// --review-period after it was made, is listed among the reviews once due,
// and the child's worker confirms it.
func TestRule_R19_AGrantThatEndsWhileTheServerIsDown(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--review-period", "720h")...)
		w := newWorld(s)
		var policy api.Policy
		w.get(w.service, "/v1/policy").decode(&policy)
		require.Equal(t, 30*24*3600, policy.ReviewPeriod)

		child := w.registerChild()
		limited, open := w.account(string(domain.KindParent)), w.account(string(domain.KindGuardian))
		expiresAt := now().Add(3 * time.Second).Truncate(time.Microsecond)
		m := w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants", map[string]any{"account_id": limited.id,
			"relationship": "parent", "permissions": []string{"view"}, "reason": "until the hearing", "expires_at": rfc(expiresAt)}, http.StatusOK)
		require.True(t, expiresAt.Equal(parseRFC(t, m["expires_at"].(string))))
		require.Nil(t, m["review_by"])
		before := now()
		m = w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants", map[string]any{"account_id": open.id,
			"relationship": "guardian", "permissions": []string{"view"}, "reason": "guardian"}, http.StatusOK)
		reviewBy := parseRFC(t, m["review_by"].(string))
		require.WithinDuration(t, before.Add(30*24*time.Hour), reviewBy, time.Minute)

		a := w.check(limited.id, child, "view")
		requireAccess(t, a, true, "grant")
		require.NotNil(t, a.ExpiresAt)
		require.True(t, expiresAt.Equal(*a.ExpiresAt))
		requireAccess(t, w.check(limited.id, child, "view", expiresAt), false, "grant_expired", "at expires_at, before any expiry is recorded")

		// Due for review within 31 days: the open-ended grant only.
		var due api.ReviewList
		w.get(w.worker, "/v1/reviews?due_before="+rfc(now().Add(31*24*time.Hour))).decode(&due)
		require.Len(t, due.Grants, 2, "%+v", due) // the time-limited one ends before too
		rv := w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants/"+open.id+"/review", map[string]string{"reason": "still needed"}, http.StatusOK)
		require.NotEmpty(t, rv["review_by"])

		s.stop()
		if d := time.Until(expiresAt.Add(100 * time.Millisecond)); d > 0 {
			time.Sleep(d) // the grant ends while the server is down
		}
		s.start()

		require.Eventually(t, func() bool {
			return len(auditOf(w.audit("child_id="+child), domain.TypeGrantExpired)) >= 1
		}, e2eWait, 100*time.Millisecond)
		expired := auditOf(w.audit("child_id="+child), domain.TypeGrantExpired)
		require.Len(t, expired, 1, "exactly one expiry per time-limited grant")
		require.True(t, expiresAt.Equal(expired[0].EffectiveAt), "effective at expires_at, though written late")
		require.Equal(t, "system", expired[0].ActorRole)
		requireAccess(t, w.check(limited.id, child, "view"), false, "grant_expired")
		requireAccess(t, w.check(open.id, child, "view"), true, "grant")
	})
}
