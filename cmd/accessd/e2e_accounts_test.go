package main

// End-to-end tests of the rules about network members, authorization and
// accounts (R7 to R13).

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

func TestRule_R7_NetworkMembersSeeOnlyThroughWorkersGrants(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		member := w.account(string(domain.KindNetworkMember))
		parent := w.account(string(domain.KindParent))
		grants := "/v1/children/" + child + "/grants"

		requireAccess(t, w.check(member.id, child, "view"), false, "no_relationship")

		// Bad grants: no reason, a permission a grant cannot give, an
		// unknown relationship.
		before := s.head()
		for _, body := range []map[string]any{
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{"view"}, "reason": ""},
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{"view", "complete_outstanding"}, "reason": "r"},
			{"account_id": member.id, "relationship": "friend", "permissions": []string{"view"}, "reason": "r"},
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{}, "reason": "r"},
		} {
			w.worker.do("POST", grants, body).problem(400, "invalid")
		}
		require.Equal(t, before, s.head())

		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "family friend, agreed at the review")
		a := w.check(member.id, child, "view")
		requireAccess(t, a, true, "grant")
		require.Equal(t, []string{"view"}, strs(a.Permissions))
		require.False(t, w.check(member.id, child, "record").Allowed)
		require.False(t, w.check(member.id, child, "complete_outstanding").Allowed)
		w.worker.do("POST", grants, map[string]any{"account_id": member.id, "relationship": "network_member",
			"permissions": []string{"view"}, "reason": "again"}).problem(409, "conflict")

		// A new grant replaces the old one: now with record.
		w.grant(w.worker, child, member.id, "network_member", []string{"view", "record"}, "helps with school forms")
		requireAccess(t, w.check(member.id, child, "record"), true, "grant")
		require.False(t, w.check(member.id, child, "complete_outstanding").Allowed, "a grant never gives complete_outstanding")
		require.Equal(t, []string{"view", "record"}, strs(w.viewersOf(child)[member.id].Permissions))
		require.Contains(t, w.childrenOf(member.id), child)

		w.grant(w.worker, child, parent.id, "parent", []string{"view"}, "birth mother, contact plan")
		requireAccess(t, w.check(parent.id, child, "view"), true, "grant")

		// Revocation, with a reason.
		revoke := "/v1/children/" + child + "/grants/" + member.id + "/revoke"
		w.worker.do("POST", revoke, map[string]string{"reason": ""}).problem(400, "invalid")
		w.cmd(w.worker, "POST", revoke, map[string]string{"reason": "no longer part of the network"}, 200)
		for _, p := range allPerms {
			requireAccess(t, w.check(member.id, child, p), false, "revoked", p)
		}
		requireAccess(t, w.check(parent.id, child, "view"), true, "grant", "the parent's grant stands")
		w.worker.do("POST", revoke, map[string]string{"reason": "again"}).problem(404, "not_found")

		entries := w.audit("child_id=" + child)
		made := auditOf(entries, domain.TypeAccessGranted)
		require.Len(t, made, 3)
		var data struct {
			Relationship string   `json:"relationship"`
			Permissions  []string `json:"permissions"`
		}
		require.NoError(t, json.Unmarshal(made[1].Data, &data))
		require.Equal(t, "network_member", data.Relationship)
		require.Equal(t, []string{"view", "record"}, strs(data.Permissions))
		require.Equal(t, "helps with school forms", text(made[1].Reason))
		revoked := auditOf(entries, domain.TypeAccessRevoked)
		require.Len(t, revoked, 1)
		require.Equal(t, "no longer part of the network", text(revoked[0].Reason))
		require.Equal(t, w.worker.sub, revoked[0].Actor)
	})
}

func TestRule_R8_NobodyObtainsAccessByAsking(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		eve := s.as(domain.RoleWorker, "worker-eve-"+uuid.NewString()[:6])
		// A worker who is also the holder of the member's portal account
		// (same identity), allocated to a child of their own.
		selfWorker := s.as(domain.RoleWorker, member.subject)
		ownChild := w.registerChildBy(selfWorker)

		grantBody := func(account string, perms ...string) map[string]any {
			return map[string]any{"account_id": account, "relationship": "network_member", "permissions": perms, "reason": "please"}
		}
		grants := "/v1/children/" + child + "/grants"
		refusals := []struct {
			name         string
			c            *e2eClient
			method, path string
			body         any
		}{
			{"a worker not allocated to the child grants", eve, "POST", grants, grantBody(member.id, "view")},
			{"a manager grants", w.manager, "POST", grants, grantBody(member.id, "view")},
			{"the service grants", w.service, "POST", grants, grantBody(member.id, "view")},
			{"the portals team grants", w.portals, "POST", grants, grantBody(member.id, "view")},
			{"an auditor grants", w.auditor, "POST", grants, grantBody(member.id, "view")},
			{"the service widens a carer's access", w.service, "POST", grants, grantBody(carer.id, "view", "record")},
			{"an account holder grants themselves access", selfWorker, "POST", "/v1/children/" + ownChild + "/grants", grantBody(member.id, "view")},
			{"the service places a child", w.service, "POST", "/v1/children/" + child + "/placements",
				map[string]string{"carer_account_id": carer.id, "started_at": rfc(now())}},
			{"a worker not allocated ends a placement", eve, "POST", "/v1/children/" + child + "/placements/" + pl + "/end",
				map[string]string{"ended_at": rfc(now()), "reason": "r"}},
			{"a worker allocates a child to themselves", eve, "POST", "/v1/children/" + child + "/allocation",
				map[string]string{"worker_id": eve.sub}},
			{"the service invites", w.service, "POST", "/v1/invitations", map[string]string{"email": "x-" + uuid.NewString()[:8] + "@example.org", "kind": "parent"}},
			{"a worker closes an account", w.worker, "POST", "/v1/accounts/" + carer.id + "/close", map[string]string{"reason": "r"}},
		}
		before := s.head()
		ids := map[string]int{}
		for i, r := range refusals {
			id := fmt.Sprintf("e2e-r8-%d-%s", i, uuid.NewString()[:8])
			ids[id] = i
			res := r.c.do(r.method, r.path, r.body, "X-Request-Id", id)
			res.problem(403, "forbidden")
			require.Equal(t, id, res.header.Get("X-Request-Id"), r.name)
		}
		require.Equal(t, before, s.head(), "refused commands append nothing")
		requireAccess(t, w.check(member.id, child, "view"), false, "no_relationship")
		requireAccess(t, w.check(member.id, ownChild, "view"), false, "no_relationship")
		viewers := w.viewersOf(child)
		require.Len(t, viewers, 1, "nothing widened: %+v", viewers)
		require.Equal(t, "placement", text(viewers[carer.id].Reason))

		// Queries refused for the caller's role.
		w.service.do("GET", "/v1/audit", nil, "X-Request-Id", "e2e-r8-query-audit").problem(403, "forbidden")
		w.worker.do("GET", "/v1/security-log", nil, "X-Request-Id", "e2e-r8-query-seclog").problem(403, "forbidden")

		// Every refusal is in the security log, for auditors.
		log := w.securityLog("")
		found := map[string]e2eSecurityEntry{}
		for _, e := range log {
			found[e.RequestID] = e
		}
		for id, i := range ids {
			e, ok := found[id]
			require.True(t, ok, "%s: not in the security log", refusals[i].name)
			require.Equal(t, refusals[i].c.sub, e.ActorID, refusals[i].name)
			require.Equal(t, string(refusals[i].c.role), e.ActorRole, refusals[i].name)
			require.Equal(t, "forbidden", e.Code, refusals[i].name)
			require.NotEmpty(t, e.Command, refusals[i].name)
			require.NotEmpty(t, e.Target, refusals[i].name)
			require.NotEmpty(t, e.Detail, refusals[i].name)
		}
		require.Equal(t, "query_audit_list", found["e2e-r8-query-audit"].Command)
		require.Equal(t, "query_security_log", found["e2e-r8-query-seclog"].Command)
		require.Equal(t, "grant", found[keyOf(ids, 0)].Command)
		require.Equal(t, "child/"+child+"/grant/"+member.id, found[keyOf(ids, 0)].Target)

		// A manager reallocates the child: then only the new worker grants.
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": eve.sub}, 200)
		w.worker.do("POST", grants, grantBody(member.id, "view")).problem(403, "forbidden")
		w.grant(eve, child, member.id, "network_member", []string{"view"}, "agreed at the review")
		requireAccess(t, w.check(member.id, child, "view"), true, "grant")
	})
}

// keyOf returns the key of m whose value is v.
func keyOf(m map[string]int, v int) string {
	for k, x := range m {
		if x == v {
			return k
		}
	}
	return ""
}

func TestRule_R9_AccountsExistOnlyByInvitation(t *testing.T) {
	const ttl = 8 * time.Second // room for the activation below on a loaded machine
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--invitation-ttl", ttl.String())...)
		w := newWorld(s)
		start := now()
		a := w.invite(string(domain.KindFosterCarer))
		require.False(t, a.expiresAt.Before(start.Add(ttl)), "expires_at %s: the policy's TTL from the invitation", a.expiresAt)

		// Accepted when the invitee signs in with an identity whose email
		// is the invited one, as reported by the service (and nobody else).
		act := "/v1/accounts/" + a.id + "/activation"
		before := s.head()
		w.worker.do("POST", act, map[string]string{"identity_subject": a.subject, "email": a.email}).problem(403, "forbidden")
		p := w.service.do("POST", act, map[string]string{"identity_subject": a.subject, "email": "someone-else@example.org"}).problem(409, "conflict")
		require.Contains(t, p.Detail, "does not match")
		w.activate(a)
		require.Equal(t, before+2, s.head(), "the activation and the identity's link; the refusals appended nothing")
		v, _ := w.accountView(a.id)
		require.Equal(t, "active", text(v.Status))
		require.Equal(t, "foster_carer", text(v.Kind))
		require.True(t, a.expiresAt.Equal(v.ExpiresAt))
		require.NotNil(t, v.ActivatedAt)

		before = s.head()
		w.service.do("POST", "/v1/accounts/"+uuid.NewString()+"/activation",
			map[string]string{"identity_subject": "idp|" + uuid.NewString(), "email": a.email}).problem(404, "not_found")
		w.service.do("POST", "/v1/invitations", map[string]string{"email": "x@example.org", "kind": "parent"}).problem(403, "forbidden")
		w.worker.do("POST", "/v1/invitations", map[string]string{"email": "x@example.org", "kind": "admin"}).problem(400, "invalid")
		require.Equal(t, before, s.head())
		var byIdentity api.AccountList
		w.get(w.service, "/v1/accounts?identity_subject="+a.subject).decode(&byIdentity)
		require.Len(t, byIdentity.Accounts, 1)
		require.Equal(t, a.id, text(byIdentity.Accounts[0].AccountID), "the identity's subject is linked")

		// An invitation nobody accepts expires.
		b := w.invite(string(domain.KindParent))
		v, _ = w.accountView(b.id, "at="+rfc(b.expiresAt.Add(-time.Microsecond)))
		require.Equal(t, "parent", text(v.Kind))
		require.Equal(t, "invited", text(v.Status))
		v, _ = w.accountView(b.id, "at="+rfc(b.expiresAt))
		require.Equal(t, "expired", text(v.Status))
		require.Eventually(t, func() bool {
			v, _ := w.accountView(b.id)
			return v.Status == api.AccountStatusExpired
		}, e2eWait, 50*time.Millisecond)
		var expired api.AccountList
		w.get(w.worker, "/v1/accounts?status=expired").decode(&expired)
		require.Len(t, expired.Accounts, 1, "the list agrees: %+v", expired)
		require.Equal(t, b.id, text(expired.Accounts[0].AccountID))
		// The status is "expired" from expires_at on; the process manager
		// writes InvitationExpired soon after: wait for it, so that the log
		// stands still while the refusal is checked.
		require.Eventually(t, func() bool {
			return len(auditOf(w.audit(""), domain.TypeInvitationExpired)) == 1
		}, e2eWait, 50*time.Millisecond)
		before = s.head()
		w.service.do("POST", "/v1/accounts/"+b.id+"/activation",
			map[string]string{"identity_subject": b.subject, "email": b.email}).problem(409, "conflict")
		require.Equal(t, before, s.head())
		v, _ = w.accountView(b.id)
		require.Equal(t, "expired", text(v.Status))

		// Inviting again renews the invitation.
		b2 := w.inviteEmail(b.email, string(domain.KindParent))
		require.Equal(t, b.id, b2.id, "one email, one account")
		require.True(t, b2.expiresAt.After(b.expiresAt))
		v, _ = w.accountView(b.id)
		require.Equal(t, "invited", text(v.Status))
	})
}

func TestRule_R10_OneEmailOneIdentityOneAccount(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		a := w.account(string(domain.KindFosterCarer))
		b := w.invite(string(domain.KindParent))
		before := s.head()

		for _, email := range []string{a.email, strings.ToUpper(a.email)} {
			p := w.worker.do("POST", "/v1/invitations", map[string]string{"email": email, "kind": "parent"}).problem(409, "already_registered")
			require.Contains(t, p.Detail, "already registered: sign in with your existing account")
		}
		// An identity already linked to another account.
		p := w.service.do("POST", "/v1/accounts/"+b.id+"/activation",
			map[string]string{"identity_subject": a.subject, "email": b.email}).problem(409, "already_registered")
		require.Contains(t, p.Detail, "already registered: sign in with your existing account")
		// An account whose identity would change.
		w.service.do("POST", "/v1/accounts/"+a.id+"/activation",
			map[string]string{"identity_subject": "idp|" + uuid.NewString(), "email": a.email}).problem(409, "already_registered")
		require.Equal(t, before, s.head())
		v, _ := w.accountView(b.id)
		require.Equal(t, "invited", text(v.Status))

		// Signing in again with the same identity changes nothing.
		w.cmd(w.service, "POST", "/v1/accounts/"+a.id+"/activation", map[string]string{"identity_subject": a.subject, "email": a.email}, 200)
		require.Equal(t, before, s.head())

		// The refusals are in the security log.
		log := w.securityLog("code=already_registered")
		require.GreaterOrEqual(t, len(log), 4, "%+v", log)
	})
}

func TestRule_R11_PhoneResetWorkflow(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		carer := w.account(string(domain.KindFosterCarer))
		phone := "/v1/accounts/" + carer.id + "/phone"
		resets := "/v1/accounts/" + carer.id + "/phone-reset-requests"
		const first, second = "+44 7700 900123", "07700 900456"

		v, _ := w.accountView(carer.id)
		require.True(t, v.NeedsPhoneEnrolment)
		require.Nil(t, v.PhoneHint)

		// The service reports the enrolment at sign-in; the engine keeps the
		// last three digits.
		w.cmd(w.service, "PUT", phone, map[string]string{"phone": first}, 200)
		v, r := w.accountView(carer.id)
		require.False(t, v.NeedsPhoneEnrolment)
		require.NotNil(t, v.PhoneHint)
		require.Equal(t, "***123", *v.PhoneHint)
		require.NotContains(t, string(r.body), "900123")

		// Nobody changes the number directly: not its user (through the
		// service), not a worker, not the portals team.
		before := s.head()
		p := w.service.do("PUT", phone, map[string]string{"phone": second}).problem(409, "conflict")
		require.Contains(t, p.Detail, "cannot be changed by its user")
		w.worker.do("PUT", phone, map[string]string{"phone": second}).problem(403, "forbidden")
		w.portals.do("PUT", phone, map[string]string{"phone": second}).problem(403, "forbidden")
		// The portals team clears only after a worker's request.
		w.portals.do("POST", phone+"/clear", map[string]string{}).problem(409, "conflict")
		w.worker.do("POST", resets, map[string]string{"reason": ""}).problem(400, "invalid")
		s.as(domain.RoleWorker, carer.subject).do("POST", resets, map[string]string{"reason": "my own phone"}).problem(403, "forbidden")
		w.service.do("POST", resets, map[string]string{"reason": "lost phone"}).problem(403, "forbidden")
		require.Equal(t, before, s.head())

		w.cmd(w.worker, "POST", resets, map[string]string{"reason": "carer lost their phone, confirmed by call"}, 200)
		var pending api.AccountList
		w.get(w.portals, "/v1/accounts?phone_reset_requested=true").decode(&pending)
		require.Len(t, pending.Accounts, 1)
		require.Equal(t, carer.id, text(pending.Accounts[0].AccountID))
		w.worker.do("POST", resets, map[string]string{"reason": "again"}).problem(409, "conflict")
		w.worker.do("POST", phone+"/clear", map[string]string{}).problem(403, "forbidden")
		w.service.do("POST", phone+"/clear", map[string]string{}).problem(403, "forbidden")

		w.cmd(w.portals, "POST", phone+"/clear", map[string]string{}, 200)
		v, _ = w.accountView(carer.id)
		require.True(t, v.NeedsPhoneEnrolment, "needs phone enrolment until the next sign-in")
		require.Nil(t, v.PhoneHint)

		w.cmd(w.service, "PUT", phone, map[string]string{"phone": second}, 200)
		v, _ = w.accountView(carer.id)
		require.False(t, v.NeedsPhoneEnrolment)
		require.Equal(t, "***456", *v.PhoneHint)

		// Only the masked number was ever kept.
		entries := w.audit("account_id=" + carer.id)
		require.Len(t, auditOf(entries, domain.TypePhoneEnrolled), 2)
		raw, err := json.Marshal(entries)
		require.NoError(t, err)
		for _, digits := range []string{"7700 900123", "7700900123", "7700 900456", "7700900456"} {
			require.NotContains(t, string(raw), digits)
		}
		if s.isSQLite() {
			files := string(s.dbFiles())
			for _, digits := range []string{"7700 900123", "7700900123", "7700 900456", "7700900456"} {
				require.NotContains(t, files, digits, "the database holds the full number")
			}
		}
	})
}

func TestRule_R12_NoPasswordIsEverReceivedOrStored(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		a := w.invite(string(domain.KindFosterCarer))
		secret := "CorrectHorseBatteryStaple-" + uuid.NewString()
		before := s.head()
		for _, r := range []struct {
			c            *e2eClient
			method, path string
			body         map[string]string
		}{
			{w.worker, "POST", "/v1/invitations", map[string]string{"email": "p-" + uuid.NewString()[:8] + "@example.org", "kind": "parent", "password": secret}},
			{w.service, "POST", "/v1/accounts/" + a.id + "/activation", map[string]string{"identity_subject": a.subject, "email": a.email, "password": secret}},
			{w.service, "POST", "/v1/accounts/" + a.id + "/activation", map[string]string{"identity_subject": a.subject, "email": a.email, "new_password": secret}},
			{w.service, "PUT", "/v1/accounts/" + a.id + "/phone", map[string]string{"phone": "+44 7700 900123", "password": secret}},
		} {
			p := r.c.do(r.method, r.path, r.body).problem(400, "invalid")
			require.Contains(t, p.Detail, "password")
			require.NotContains(t, p.Detail, secret, "the problem never echoes the value")
		}
		require.Equal(t, before, s.head())
		w.activate(a)
		_, r := w.accountView(a.id)
		require.NotContains(t, strings.ToLower(string(r.body)), "passw")
		require.NotContains(t, s.logText(), secret, "not even the log saw it")
		if s.isSQLite() {
			require.NotContains(t, string(s.dbFiles()), secret)
		}
	})
}

// TestRule_R12_OpenAPIHasNoPassword: no property or parameter of the API's
// document is a password.
func TestRule_R12_OpenAPIHasNoPassword(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/openapi.yaml")
	require.NoError(t, err)
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	var tree any
	require.NoError(t, json.Unmarshal(raw, &tree))
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if props, ok := x["properties"].(map[string]any); ok {
				for k := range props {
					names = append(names, k)
				}
			}
			if n, ok := x["name"].(string); ok && x["in"] != nil {
				names = append(names, n)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(tree)
	require.Contains(t, names, "identity_subject", "the walk finds the properties")
	require.Contains(t, names, "min_position", "the walk finds the parameters")
	for _, n := range names {
		require.NotContains(t, strings.ToLower(n), "passw", n)
	}
}

func TestRule_R13_ClosingAnAccountEndsAllItsAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		c1, c2 := w.registerChild(), w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		w.place(c1, carer.id, now().Add(-30*day))
		pl2 := w.place(c2, carer.id, now().Add(-30*day))
		w.endPlacement(w.worker, c2, pl2, now(), "moved") // in grace on c2
		w.grant(w.worker, c1, member.id, "network_member", []string{"view", "record"}, "aunt")
		requireAccess(t, w.check(carer.id, c1, "record"), true, "placement")
		requireAccess(t, w.check(carer.id, c2, "view"), true, "grace_period")
		requireAccess(t, w.checkCarer(carer.id, carer.id, "view"), true, "own_record")
		require.Len(t, w.childrenOf(carer.id), 2)

		closePath := "/v1/accounts/" + carer.id + "/close"
		before := s.head()
		w.worker.do("POST", closePath, map[string]string{"reason": "r"}).problem(403, "forbidden")
		w.portals.do("POST", closePath, map[string]string{"reason": ""}).problem(400, "invalid")
		require.Equal(t, before, s.head())

		w.cmd(w.portals, "POST", closePath, map[string]string{"reason": "carer deregistered at panel"}, 200)
		for _, child := range []string{c1, c2} {
			for _, p := range allPerms {
				requireAccess(t, w.check(carer.id, child, p), false, "account_closed", p)
			}
			require.NotContains(t, w.viewersOf(child), carer.id)
		}
		requireAccess(t, w.checkCarer(carer.id, carer.id, "view"), false, "account_closed")
		require.Empty(t, w.childrenOf(carer.id))
		v, _ := w.accountView(carer.id)
		require.Equal(t, "closed", text(v.Status))
		require.NotNil(t, v.ClosedAt)
		requireAccess(t, w.check(member.id, c1, "record"), true, "grant", "other accounts keep theirs")

		// A closed account gets nothing new.
		w.portals.do("POST", closePath, map[string]string{"reason": "again"}).problem(409, "conflict")
		w.worker.do("POST", "/v1/children/"+c2+"/placements",
			map[string]string{"carer_account_id": carer.id, "started_at": rfc(now())}).problem(409, "conflict")

		// The member's account too.
		w.cmd(w.portals, "POST", "/v1/accounts/"+member.id+"/close", map[string]string{"reason": "asked to leave"}, 200)
		requireAccess(t, w.check(member.id, c1, "view"), false, "account_closed")
		w.worker.do("POST", "/v1/children/"+c2+"/grants", map[string]any{"account_id": member.id,
			"relationship": "network_member", "permissions": []string{"view"}, "reason": "r"}).problem(409, "conflict")
		require.Empty(t, w.viewersOf(c1))
	})
}
