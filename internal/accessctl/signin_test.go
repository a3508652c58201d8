package accessctl

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// runJSON runs accessctl as role against s with --output json and decodes
// its answer.
func (s *realServer) runJSON(t *testing.T, role domain.Role, args ...string) map[string]any {
	t.Helper()
	res := runCLI(t, s.env(t, role), append(args, "--output", "json")...)
	require.Equal(t, exitOK, res.code, "%v: %s", args, res.stderr)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &v), res.stdout)
	return v
}

// TestSignInAndWatchOnARealServer walks the portal's path through the new
// verbs against the engine's real API: an invitation, the account found by
// email, activation with an identity, found by identity subject, phone
// enrolment; a placement with the "now" default, the watch line it makes,
// and the tables that name ids (references, kinds, relationships).
func TestSignInAndWatchOnARealServer(t *testing.T) {
	s := newRealServer(t)
	invited := s.runJSON(t, domain.RoleWorker, "invite", "--email", "Carer@Example.org", "--kind", "foster_carer")
	account := invited["account_id"].(string)
	before := invited["position"].(string)

	found := s.runJSON(t, domain.RoleService, "accounts", "--email", "carer@example.org", "--min-position", before)
	require.Len(t, found["accounts"], 1)
	require.Equal(t, account, found["accounts"].([]any)[0].(map[string]any)["account_id"])
	require.Equal(t, "invited", found["accounts"].([]any)[0].(map[string]any)["status"])

	s.runJSON(t, domain.RoleService, "activate", "--account", account, "--identity-subject", "mynorfolk|42", "--email", "carer@example.org")
	enrolled := s.runJSON(t, domain.RoleService, "enrol-phone", "--account", account, "--phone", "07700 900123")
	byIdentity := s.runJSON(t, domain.RoleService, "accounts", "--identity-subject", "mynorfolk|42", "--min-position", enrolled["position"].(string))
	require.Len(t, byIdentity["accounts"], 1)
	item := byIdentity["accounts"].([]any)[0].(map[string]any)
	require.Equal(t, "active", item["status"])
	require.Equal(t, "***123", item["phone_hint"])
	require.Equal(t, false, item["needs_phone_enrolment"])

	child := s.runJSON(t, domain.RoleWorker, "register-child", "--reference", "NCC-2026-417")["child_id"].(string)
	placed := runCLI(t, s.env(t, domain.RoleWorker), "place", "--child", child, "--carer", account)
	require.Equal(t, exitOK, placed.code, placed.stderr)
	require.Contains(t, placed.stdout, "started_at")

	watched := runCLI(t, s.env(t, domain.RoleService), "watch", "--after", before, "--count", "1")
	require.Equal(t, exitOK, watched.code, watched.stderr)
	lines := strings.Split(strings.TrimSpace(watched.stdout), "\n")
	require.Len(t, lines, 2, watched.stdout)
	require.True(t, strings.HasPrefix(lines[0], "POSITION "), lines[0])
	require.Contains(t, lines[1], account)
	require.Contains(t, lines[1], child)
	require.Contains(t, lines[1], "view,record,complete_outstanding")
	require.Contains(t, lines[1], "placement")

	s.CaughtUp(t)
	children := runCLI(t, s.env(t, domain.RoleWorker), "children", "--account", account)
	require.Equal(t, exitOK, children.code, children.stderr)
	require.Contains(t, children.stdout, child+"  NCC-2026-417  foster_carer")
	viewers := runCLI(t, s.env(t, domain.RoleWorker), "viewers", "--child", child)
	require.Equal(t, exitOK, viewers.code, viewers.stderr)
	require.Contains(t, viewers.stdout, account+"  foster_carer  foster_carer")
	history := runCLI(t, s.env(t, domain.RoleAuditor), "history", "--account", account)
	require.Equal(t, exitOK, history.code, history.stderr)
	require.Contains(t, history.stdout, child+"  NCC-2026-417")
	require.Empty(t, history.stderr)
}
