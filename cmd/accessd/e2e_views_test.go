package main

// End-to-end tests of the record views (R20).

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R20_ViewsSurviveARestartAndRaiseAlerts: the portal backend
// records views over HTTP; each is kept with the decision at its
// viewed_at; the view without access raises an alert that an auditor's
// watch stream carries, that GET /v1/alerts and the security log list;
// views and alerts are still there after a restart.
func TestRule_R20_ViewsSurviveARestartAndRaiseAlerts(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		member := w.account(string(domain.KindNetworkMember))
		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "friend")

		// An auditor follows the alerts on the watch stream.
		req, err := http.NewRequest("GET", s.url+"/v1/watch", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+w.auditor.token)
		res, err := (&http.Client{}).Do(req) // no timeout: a stream
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		alerts := make(chan api.Alert, 16)
		go func() {
			defer close(alerts)
			sc := bufio.NewScanner(res.Body)
			event := ""
			for sc.Scan() {
				switch line := sc.Text(); {
				case strings.HasPrefix(line, "event: "):
					event = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: ") && event == "alert":
					var a api.Alert
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &a) == nil {
						alerts <- a
					}
				case line == "":
					event = ""
				}
			}
		}()

		at := rfc(now())
		body := map[string]any{"views": []map[string]string{
			{"account_id": member.id, "child_id": child, "permission": "view", "viewed_at": at},
			{"account_id": member.id, "child_id": child, "permission": "record", "viewed_at": at},
		}}
		rv := w.service.must("POST", w.q("/v1/views"), body, 200)
		var answer api.RecordViewsAnswer
		require.NoError(t, json.Unmarshal([]byte(mustJSON(t, rv)), &answer))
		require.Len(t, answer.Views, 2)
		require.True(t, answer.Views[0].Allowed)
		require.Equal(t, api.ReasonGrant, answer.Views[0].Reason)
		require.False(t, answer.Views[1].Allowed, "the grant gives view only")
		denied := answer.Views[1].ViewID

		select {
		case a, ok := <-alerts:
			require.True(t, ok, "the stream ended")
			require.Equal(t, denied, a.ViewID)
			require.Equal(t, api.AlertKindViewWithoutAccess, a.Kind)
			require.Equal(t, member.id, text(a.AccountID))
		case <-time.After(e2eWait):
			t.Fatal("no alert on the watch stream")
		}
		require.Len(t, w.securityLog("command=view"), 1)

		check := func(when string) {
			t.Helper()
			var views api.ViewPage
			require.NoError(t, json.Unmarshal([]byte(mustJSON(t, w.auditor.must("GET", "/v1/children/"+child+"/views", nil, 200))), &views), when)
			require.Len(t, views.Views, 2, when)
			require.Equal(t, answer.Views[0].ViewID, views.Views[0].ViewID, when)
			require.Equal(t, "portal-backend", views.Views[1].ReportedBy, when)
			var page api.AlertPage
			require.NoError(t, json.Unmarshal([]byte(mustJSON(t, w.auditor.must("GET", "/v1/alerts", nil, 200))), &page), when)
			require.Len(t, page.Alerts, 1, when)
			require.Equal(t, denied, page.Alerts[0].ViewID, when)
		}
		check("before the restart")
		s.restart()
		check("after the restart")
	})
}
