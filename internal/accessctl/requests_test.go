package accessctl

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

func TestIdempotencyKey(t *testing.T) {
	f := newFakeServer(t, testToken, nil)
	args := []string{"clear-phone", "--account", accountID}
	require.Equal(t, exitOK, runCLI(t, envFor(f), args...).code)
	require.Equal(t, exitOK, runCLI(t, envFor(f), args...).code)
	require.Equal(t, exitOK, runCLI(t, envFor(f), append(args, "--idempotency-key", "retry-42")...).code)
	reqs := f.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs[:2] {
		_, err := uuid.Parse(r.IdempotencyKey)
		require.NoError(t, err)
	}
	require.NotEqual(t, reqs[0].IdempotencyKey, reqs[1].IdempotencyKey, "a new key per invocation")
	require.Equal(t, "retry-42", reqs[2].IdempotencyKey)
}

// TestRetrySameKey: a command that got 503 is sent again with the same key
// and its answer printed once.
func TestRetrySameKey(t *testing.T) {
	var calls atomic.Int32
	f := newFakeServer(t, testToken, func(seenRequest) reply {
		if calls.Add(1) == 1 {
			return reply{status: 503, body: `{"title":"Unavailable","status":503,"code":"internal"}`}
		}
		return reply{body: `{"position":"9"}`}
	})
	res := runCLI(t, envFor(f), "end-grace", "--child", childID, "--placement", placementID, "--reason", "r")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "position  9\n", res.stdout)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.NotEmpty(t, reqs[0].IdempotencyKey)
	require.Equal(t, reqs[0].IdempotencyKey, reqs[1].IdempotencyKey)
	require.Equal(t, reqs[0].RawBody, reqs[1].RawBody)
}

// TestReplayedAnswer: an answer replayed for an Idempotency-Key is printed
// as usual, with a note on stderr that nothing was changed now.
func TestReplayedAnswer(t *testing.T) {
	f := newFakeServer(t, testToken, fixed(reply{body: `{"position":"9"}`, header: http.Header{"Idempotent-Replayed": {"true"}}}))
	res := runCLI(t, envFor(f), "revoke", "--child", childID, "--account", accountID, "--reason", "r", "--idempotency-key", "k-9")
	require.Equal(t, exitOK, res.code)
	require.Equal(t, "position  9\n", res.stdout)
	require.Equal(t, "accessctl: the server had already carried out this command (Idempotency-Key k-9): "+
		"this is its first answer, nothing was changed now\n", res.stderr)
}

func TestNetworkErrors(t *testing.T) {
	t.Run("nobody listening", func(t *testing.T) {
		f := newFakeServer(t, testToken, nil)
		url := f.URL
		f.Close()
		res := runCLI(t, map[string]string{envServer: url, envToken: testToken},
			"close-account", "--account", accountID, "--reason", "r", "--idempotency-key", "k-7")
		require.Equal(t, exitError, res.code)
		require.Empty(t, res.stdout)
		require.Contains(t, res.stderr, "accessctl: cannot reach the server at "+url+": ")
		require.Contains(t, res.stderr, "connection refused")
		require.Contains(t, res.stderr, "run it again with --idempotency-key k-7\n")
	})
	t.Run("timeout", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{block: true}))
		res := runCLI(t, envFor(f), "viewers", "--child", childID, "--timeout", "200ms")
		require.Equal(t, exitError, res.code)
		require.Equal(t, "accessctl: no answer from "+f.URL+" within 200ms (see --timeout)\n", res.stderr)
		require.LessOrEqual(t, len(f.requests()), 1, "a timed-out request is not retried past --timeout")
	})
	t.Run("unreadable answer", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{body: "not json"}))
		res := runCLI(t, envFor(f), "policy")
		require.Equal(t, exitError, res.code)
		require.Contains(t, res.stderr, "accessctl: unreadable answer from GET "+f.URL+"/v1/policy (status 200)")
	})
}

func TestServerPathPrefix(t *testing.T) {
	f := newFakeServer(t, testToken, nil)
	res := runCLI(t, map[string]string{envServer: f.URL + "/", envToken: testToken}, "clear-phone", "--account", accountID)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "/v1/accounts/"+accountID+"/phone/clear", f.requests()[0].Path)
}

func TestAuditAll(t *testing.T) {
	pages := map[string]string{
		"":  `{"entries":[` + auditEntry(1, "child.registered.v1", "w-1", "worker", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z") + `],"next":"1"}`,
		"1": `{"entries":[` + auditEntry(2, "worker.allocated.v1", "m-1", "manager", "cover", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z") + `],"next":"2"}`,
		"2": `{"entries":[],"next":null}`,
	}
	answer := func(r seenRequest) reply { return reply{body: pages[r.Query.Get("after")]} }

	t.Run("table", func(t *testing.T) {
		f := newFakeServer(t, testToken, answer)
		res := runCLI(t, envFor(f), "audit", "--all", "--limit", "1", "--actor", "w-1")
		require.Equal(t, exitOK, res.code, res.stderr)
		require.Equal(t, "SEQ  RECORDED                 EFFECTIVE                TYPE                 ACTOR          REASON\n"+
			"1    2026-01-01 00:00:00 UTC  2026-01-01 00:00:00 UTC  child.registered.v1  w-1 (worker)   -\n"+
			"2    2026-01-02 00:00:00 UTC  2026-01-02 00:00:00 UTC  worker.allocated.v1  m-1 (manager)  cover\n", res.stdout)
		reqs := f.requests()
		require.Len(t, reqs, 3)
		for i, after := range []string{"", "1", "2"} {
			want := url.Values{"limit": {"1"}, "actor": {"w-1"}}
			if after != "" {
				want.Set("after", after)
			}
			require.Equal(t, want, reqs[i].Query)
		}
	})
	t.Run("json merges the pages", func(t *testing.T) {
		f := newFakeServer(t, testToken, answer)
		res := runCLI(t, envFor(f), "audit", "--all", "--output", "json")
		require.Equal(t, exitOK, res.code, res.stderr)
		var got struct {
			Entries []struct {
				Seq int `json:"seq"`
			} `json:"entries"`
			Next any `json:"next"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
		require.Len(t, got.Entries, 2)
		require.Equal(t, 1, got.Entries[0].Seq)
		require.Equal(t, 2, got.Entries[1].Seq)
		require.Nil(t, got.Next)
		requireStableJSON(t, res.stdout)
	})
	t.Run("a repeated cursor stops", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{body: `{"entries":[],"next":"5"}`}))
		res := runCLI(t, envFor(f), "audit", "--all")
		require.Equal(t, exitError, res.code)
		require.Contains(t, res.stderr, `the server answered cursor "5" twice`)
		require.Len(t, f.requests(), 2)
	})
}

func TestSecurityLogAll(t *testing.T) {
	entry := func(id int, actor string) string {
		return `{"id":` + jsonNumber(id) + `,"at":"2026-01-0` + jsonNumber(id) + `T10:00:00Z","actor_id":"` + actor +
			`","actor_role":"worker","command":"revoke","target":"child/c","code":"forbidden","detail":"d"}`
	}
	pages := map[string]string{
		"":  `{"entries":[` + entry(3, "w-3") + `,` + entry(2, "w-2") + `],"next":"2","position":"8"}`,
		"2": `{"entries":[` + entry(1, "w-1") + `],"next":null,"position":"8"}`,
	}
	f := newFakeServer(t, testToken, func(r seenRequest) reply { return reply{body: pages[r.Query.Get("after")]} })
	res := runCLI(t, envFor(f), "security-log", "--all", "--code", "forbidden")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "WHEN                     ACTOR         COMMAND  TARGET   CODE       DETAIL\n"+
		"2026-01-03 10:00:00 UTC  w-3 (worker)  revoke   child/c  forbidden  d\n"+
		"2026-01-02 10:00:00 UTC  w-2 (worker)  revoke   child/c  forbidden  d\n"+
		"2026-01-01 10:00:00 UTC  w-1 (worker)  revoke   child/c  forbidden  d\n"+
		"position: 8\n", res.stdout)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, url.Values{"code": {"forbidden"}}, reqs[0].Query)
	require.Equal(t, url.Values{"code": {"forbidden"}, "after": {"2"}}, reqs[1].Query)

	res = runCLI(t, envFor(f), "security-log", "--all", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var merged struct {
		Entries []struct {
			ID int `json:"id"`
		} `json:"entries"`
		Position string `json:"position"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &merged))
	require.Len(t, merged.Entries, 3)
	require.Equal(t, 1, merged.Entries[2].ID)
	require.Equal(t, "8", merged.Position)
}

// TestNamesMatchDomain keeps the CLI's lists of names (validated before
// sending) in step with the domain's.
func TestNamesMatchDomain(t *testing.T) {
	require.Equal(t, []string{string(domain.KindFosterCarer), string(domain.KindParent), string(domain.KindGuardian),
		string(domain.KindNetworkMember)}, accountKinds)
	require.Equal(t, []string{string(domain.RelParent), string(domain.RelGuardian), string(domain.RelNetworkMember)}, relationships)
	require.Equal(t, domain.All.Names(), checkPermissions)
	for _, p := range checkPermissions {
		_, err := domain.ParsePermission(p)
		require.NoError(t, err)
	}
	require.Equal(t, []string{domain.PermView, domain.PermRecord}, grantPermissions)
	require.Equal(t, []string{string(domain.StatusInvited), string(domain.StatusActive), string(domain.StatusExpired),
		string(domain.StatusClosed)}, accountStatuses)
}

// TestAccountsAll: --all follows the account id cursors; JSON merges the
// pages' accounts.
func TestAccountsAll(t *testing.T) {
	pages := map[string]string{
		"": `{"accounts":[` + accountItem(carerID, `"carer@example.org"`, "foster_carer", "closed", "null", "null", false, false) +
			`],"next":"` + carerID + `","at":"2026-01-06T00:00:00Z","position":"26"}`,
		carerID: `{"accounts":[` + accountItem(placementID, `"other@example.org"`, "foster_carer", "closed", "null", "null", false, false) +
			`],"next":null,"at":"2026-01-06T00:00:00Z","position":"26"}`,
	}
	f := newFakeServer(t, testToken, func(r seenRequest) reply { return reply{body: pages[r.Query.Get("after")]} })
	res := runCLI(t, envFor(f), "accounts", "--all", "--status", "closed", "--limit", "1")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, carerID+"  carer@example.org")
	require.Contains(t, res.stdout, placementID+"  other@example.org")
	require.NotContains(t, res.stdout, "next:")
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, url.Values{"status": {"closed"}, "limit": {"1"}}, reqs[0].Query)
	require.Equal(t, url.Values{"status": {"closed"}, "limit": {"1"}, "after": {carerID}}, reqs[1].Query)

	res = runCLI(t, envFor(f), "accounts", "--all", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var merged struct {
		Accounts []struct {
			AccountID string `json:"account_id"`
		} `json:"accounts"`
		Next any `json:"next"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &merged))
	require.Len(t, merged.Accounts, 2)
	require.Equal(t, placementID, merged.Accounts[1].AccountID)
	require.Nil(t, merged.Next)
	requireStableJSON(t, res.stdout)
}
