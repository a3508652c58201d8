package main

// A small world driven through the API: the actors of a scenario and the
// consistency token of its last command (see e2e_server_test.go).

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// ---- a small world driven through the API ----

// e2eWorld holds the actors of a scenario and the consistency token of its
// last command: every query passes it as min_position, so it reads its own
// writes.
type e2eWorld struct {
	t       *testing.T
	s       *e2eServer
	worker  *e2eClient // the allocated worker of the children it registers
	manager *e2eClient
	service *e2eClient
	portals *e2eClient
	auditor *e2eClient
	last    eventlog.Position
}

func newWorld(s *e2eServer) *e2eWorld {
	suffix := uuid.NewString()[:8]
	return &e2eWorld{t: s.t, s: s,
		worker:  s.as(domain.RoleWorker, "worker-ann-"+suffix),
		manager: s.as(domain.RoleManager, "manager-bo-"+suffix),
		service: s.as(domain.RoleService, "portal-backend"),
		portals: s.as(domain.RolePortalsTeam, "portals-cy-"+suffix),
		auditor: s.as(domain.RoleAuditor, "auditor-di-"+suffix),
	}
}

// note keeps a command's consistency token (the latest one seen).
func (w *e2eWorld) note(m map[string]any) string {
	w.t.Helper()
	tok, ok := m["position"].(string)
	require.True(w.t, ok, "no position in %v", m)
	p, err := eventlog.ParsePosition(tok)
	require.NoError(w.t, err)
	if w.last.Before(p) {
		w.last = p
	}
	return tok
}

// cmd sends a command as c, requires status want and notes its position.
func (w *e2eWorld) cmd(c *e2eClient, method, path string, body any, want int) map[string]any {
	w.t.Helper()
	m := c.must(method, path, body, want)
	w.note(m)
	return m
}

// q appends min_position (the world's last token) to a query path.
func (w *e2eWorld) q(path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "min_position=" + w.last.String()
}

// get runs a query as c with min_position and requires 200.
func (w *e2eWorld) get(c *e2eClient, path string) *e2eResp {
	w.t.Helper()
	r := c.do("GET", w.q(path), nil)
	require.Equal(w.t, http.StatusOK, r.status, r.String())
	return r
}

func (w *e2eWorld) registerChild() string {
	w.t.Helper()
	return w.registerChildBy(w.worker)
}

func (w *e2eWorld) registerChildBy(c *e2eClient) string {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children", map[string]string{"reference": "NCC-" + uuid.NewString()[:6]}, http.StatusCreated)
	return m["child_id"].(string)
}

// e2eAccount is an invited account.
type e2eAccount struct {
	id, email, subject string
	expiresAt          time.Time
}

// invite invites a new email address for an account of kind.
func (w *e2eWorld) invite(kind string) e2eAccount {
	w.t.Helper()
	return w.inviteEmail(strings.ReplaceAll(kind, "_", "-")+"-"+uuid.NewString()[:12]+"@example.org", kind)
}

// inviteEmail invites email for an account of kind, as the world's worker.
func (w *e2eWorld) inviteEmail(email, kind string) e2eAccount {
	w.t.Helper()
	m := w.cmd(w.worker, "POST", "/v1/invitations", map[string]string{"email": email, "kind": kind}, http.StatusCreated)
	exp, err := time.Parse(time.RFC3339Nano, m["expires_at"].(string))
	require.NoError(w.t, err)
	return e2eAccount{id: m["account_id"].(string), email: email, subject: "idp|" + uuid.NewString(), expiresAt: exp}
}

// activate reports the invitee's first sign-in, as the service.
func (w *e2eWorld) activate(a e2eAccount) {
	w.t.Helper()
	w.cmd(w.service, "POST", "/v1/accounts/"+a.id+"/activation",
		map[string]string{"identity_subject": a.subject, "email": a.email}, http.StatusOK)
}

// account invites and activates an account of kind.
func (w *e2eWorld) account(kind string) e2eAccount {
	w.t.Helper()
	a := w.invite(kind)
	w.activate(a)
	return a
}

// place places child with carer from startedAt, as the world's worker.
func (w *e2eWorld) place(child, carer string, startedAt time.Time) string {
	w.t.Helper()
	return w.placeBy(w.worker, child, carer, startedAt)
}

func (w *e2eWorld) placeBy(c *e2eClient, child, carer string, startedAt time.Time) string {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children/"+child+"/placements",
		map[string]string{"carer_account_id": carer, "started_at": rfc(startedAt)}, http.StatusCreated)
	return m["placement_id"].(string)
}

// endPlacement ends a placement at endedAt and returns grace_until.
func (w *e2eWorld) endPlacement(c *e2eClient, child, placement string, endedAt time.Time, reason string) time.Time {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children/"+child+"/placements/"+placement+"/end",
		map[string]string{"ended_at": rfc(endedAt), "reason": reason}, http.StatusOK)
	return parseRFC(w.t, m["grace_until"].(string))
}

// grant grants account access to child's record, as c.
func (w *e2eWorld) grant(c *e2eClient, child, account, relationship string, perms []string, reason string) {
	w.t.Helper()
	w.cmd(c, "POST", "/v1/children/"+child+"/grants", map[string]any{"account_id": account,
		"relationship": relationship, "permissions": perms, "reason": reason}, http.StatusOK)
}

// e2eCheck is the answer of GET /v1/check.
type e2eCheck = api.CheckAnswer

// check asks, as the service, whether account may do perm on child's
// record, now or at the optional time.
func (w *e2eWorld) check(account, child, perm string, at ...time.Time) e2eCheck {
	w.t.Helper()
	return w.checkQuery("account_id=" + account + "&child_id=" + child + "&permission=" + perm + atParam(at))
}

// checkCarer asks whether account may do perm on carer's own carer record.
func (w *e2eWorld) checkCarer(account, carer, perm string, at ...time.Time) e2eCheck {
	w.t.Helper()
	return w.checkQuery("account_id=" + account + "&carer_id=" + carer + "&permission=" + perm + atParam(at))
}

func (w *e2eWorld) checkQuery(q string) e2eCheck {
	w.t.Helper()
	var a e2eCheck
	w.get(w.service, "/v1/check?"+q).decode(&a)
	return a
}

func atParam(at []time.Time) string {
	if len(at) == 0 {
		return ""
	}
	return "&at=" + url.QueryEscape(rfc(at[0]))
}

// requireAccess requires the check's answer.
func requireAccess(t *testing.T, a e2eCheck, allowed bool, reason string, msg ...any) {
	t.Helper()
	require.Equal(t, allowed, a.Allowed, "%+v %v", a, msg)
	require.Equal(t, reason, text(a.Reason), "%+v %v", a, msg)
}

// e2eAuditEntry is an entry of GET /v1/audit.
type e2eAuditEntry = api.AuditEntry

// audit reads every audit entry matching the filter query (e.g.
// "child_id=..."), following the "next" cursor.
func (w *e2eWorld) audit(filter string) []e2eAuditEntry {
	w.t.Helper()
	var all []e2eAuditEntry
	after := ""
	for page := 0; page < 1000; page++ {
		q := "/v1/audit?limit=1000"
		if filter != "" {
			q += "&" + filter
		}
		if after != "" {
			q += "&after=" + after
		}
		var a api.AuditPage
		w.get(w.auditor, q).decode(&a)
		all = append(all, a.Entries...)
		if a.Next == nil {
			return all
		}
		after = *a.Next
	}
	w.t.Fatal("audit: too many pages")
	return nil
}

// auditOf returns the entries of type typ among entries.
func auditOf(entries []e2eAuditEntry, typ string) []e2eAuditEntry {
	var out []e2eAuditEntry
	for _, e := range entries {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// e2eInterval is an interval of GET /v1/children/{id}/history.
type e2eInterval = api.Interval

// history reads a child's (or with path "/v1/accounts/ID/history", an
// account's) access history; params are extra query parameters.
func (w *e2eWorld) history(path, params string) []e2eInterval {
	w.t.Helper()
	if params != "" {
		path += "?" + params
	}
	var h api.ChildHistory // an account's history has the same intervals
	w.get(w.auditor, path).decode(&h)
	return h.Intervals
}

// intervalsOf returns the intervals of account.
func intervalsOf(ivs []e2eInterval, account string) []e2eInterval {
	var out []e2eInterval
	for _, iv := range ivs {
		if iv.AccountID.String() == account {
			out = append(out, iv)
		}
	}
	return out
}

// e2eAccountView is the answer of GET /v1/accounts/{id}.
type e2eAccountView = api.Account

func (w *e2eWorld) accountView(id string, params ...string) (e2eAccountView, *e2eResp) {
	w.t.Helper()
	path := "/v1/accounts/" + id
	if len(params) > 0 {
		path += "?" + strings.Join(params, "&")
	}
	r := w.get(w.auditor, path)
	var v e2eAccountView
	r.decode(&v)
	return v, r
}

// e2eSecurityEntry is an entry of GET /v1/security-log.
type e2eSecurityEntry = api.SecurityLogEntry

// securityLog reads the security log (newest first, one page of 1000).
func (w *e2eWorld) securityLog(filter string) []e2eSecurityEntry {
	w.t.Helper()
	path := "/v1/security-log?limit=1000"
	if filter != "" {
		path += "&" + filter
	}
	var a api.SecurityLogPage
	w.get(w.auditor, path).decode(&a)
	return a.Entries
}

// ---- times ----

// rfc formats t as RFC 3339 in UTC with microseconds (the engine's
// precision).
func rfc(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }

func parseRFC(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v
}

// now is the wall clock in UTC to the microsecond.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

const day = 24 * time.Hour

// text is v as the wire writes it (a typed string, a UUID), to compare
// the typed answers with the strings the tests hold.
func text(v any) string { return fmt.Sprint(v) }

// strs converts a list of typed strings (e.g. api.Permissions) to plain
// strings.
func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
