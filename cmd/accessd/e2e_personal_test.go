package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestRule_R22_TheEventLogHoldsPersonalDataSealed: an email, an identity
// subject, a child's reference and a worker's reason go into the event
// store sealed (the events table holds none of them in plain text), while
// every answer shows them as they were given (the audit trail's data and
// reasons).
func TestRule_R22_TheEventLogHoldsPersonalDataSealed(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		reference := "NCC-SEALED-" + strings.ToUpper(strings.ReplaceAll(t.Name(), "/", "-"))
		m := w.cmd(w.worker, "POST", "/v1/children", map[string]string{"reference": reference}, http.StatusCreated)
		child := m["child_id"].(string)
		carer := w.inviteEmail("sealed.carer."+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "."))+"@example.org", string(domain.KindFosterCarer))
		w.activate(carer)
		pl := w.place(child, carer.id, now().Add(-time.Hour))
		const reason = "moved to her grandmother's in Leeds"
		w.endPlacement(w.worker, child, pl, now(), reason)

		var data strings.Builder
		for _, e := range w.audit("account_id=" + carer.id) {
			data.Write(e.Data)
		}
		require.Contains(t, data.String(), carer.email, "the audit trail answers the email opened")
		require.Contains(t, data.String(), carer.subject)
		var reasons []string
		for _, e := range w.audit("child_id=" + child) {
			reasons = append(reasons, text(e.Reason))
		}
		require.Contains(t, reasons, reason, "the audit trail answers the reason opened")

		if s.flag("--event-store") != "" && strings.HasPrefix(s.flag("--event-store"), "esdb") {
			return // the events are in EventStoreDB: the same layer sealed them
		}
		rows, err := s.openDB().QueryContext(context.Background(), "SELECT data, reason FROM events")
		require.NoError(t, err)
		defer rows.Close()
		var stored strings.Builder
		for rows.Next() {
			var data []byte
			var reason string
			require.NoError(t, rows.Scan(&data, &reason))
			stored.Write(data)
			stored.WriteString(reason)
		}
		require.NoError(t, rows.Err())
		require.NotEmpty(t, stored.String())
		for _, v := range []string{reference, carer.email, carer.subject, reason} {
			require.NotContains(t, stored.String(), v, "the events table holds %q in plain text", v)
		}
		require.Contains(t, stored.String(), domain.SealedPrefix)
	})
}
