package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// fuzzCommand is one command route with the role that may send it and a
// valid body for the seed corpus.
type fuzzCommand struct {
	method, path string
	role         domain.Role
	seed         string
}

func fuzzCommands(w world) []fuzzCommand {
	child, acct, pl := "/v1/children/"+w.child, "/v1/accounts/"+w.member, "/v1/children/"+w.child+"/placements/"+w.placement
	return []fuzzCommand{
		{"POST", "/v1/children", domain.RoleWorker, `{"reference":"NCC-9"}`},
		{"POST", child + "/allocation", domain.RoleManager, `{"worker_id":"worker-ann"}`},
		{"POST", "/v1/invitations", domain.RoleWorker, `{"email":"new@example.org","kind":"parent"}`},
		{"POST", acct + "/activation", domain.RoleService, `{"identity_subject":"idp|x","email":"` + w.memberEmail + `"}`},
		{"POST", acct + "/close", domain.RolePortalsTeam, `{"reason":"left"}`},
		{"POST", child + "/placements", domain.RoleWorker, `{"carer_account_id":"` + w.carer + `","started_at":"2026-03-02T09:00:00Z"}`},
		{"POST", pl + "/end", domain.RoleWorker, `{"ended_at":"2026-03-09T09:00:00Z","reason":"moved"}`},
		{"POST", pl + "/end-grace", domain.RoleWorker, `{"reason":"concern"}`},
		{"POST", child + "/grants", domain.RoleWorker, `{"account_id":"` + w.member + `","relationship":"parent","permissions":["view","record"],"reason":"r"}`},
		{"POST", child + "/grants/" + w.member + "/revoke", domain.RoleWorker, `{"reason":"r"}`},
		{"POST", acct + "/phone-reset-requests", domain.RoleWorker, `{"reason":"lost"}`},
		{"POST", acct + "/phone/clear", domain.RolePortalsTeam, `{}`},
		{"PUT", acct + "/phone", domain.RoleService, `{"phone":"+44 7700 900123"}`},
	}
}

// FuzzCommandBodies sends arbitrary bodies to every command, as the role
// that may send it, through the whole stack (real command service and SQL
// event store). Whatever the body, the answer is never a 5xx, a 4xx
// appends nothing to the event log, and every answer validates against
// docs/openapi.yaml (checked when the test ends).
func FuzzCommandBodies(f *testing.F) {
	e := newEnv(f, sqltest.SQLiteMemory(f))
	w := e.buildWorld()
	cmds := fuzzCommands(w)
	for i, c := range cmds {
		f.Add(uint8(i), []byte(c.seed))
		f.Add(uint8(i), []byte(`{}`))
		f.Add(uint8(i), []byte(strings.Replace(c.seed, `"`, `"\u202e`, 3)))
		f.Add(uint8(i), []byte(strings.Replace(c.seed, `}`, `,"x":null}`, 1)))
		f.Add(uint8(i), []byte(strings.Replace(c.seed, `:`, `:[`, 1)))
	}
	f.Add(uint8(0), []byte("{\"reference\":\"\xff\"}"))
	f.Add(uint8(0), []byte(`{"reference":"a\u0000"}`))
	f.Add(uint8(5), []byte(`{"carer_account_id":"`+w.carer+`","started_at":"2026-03-02T09:00:00+14:00"}`))
	f.Add(uint8(8), []byte(`{"account_id":"`+w.member+`","relationship":"parent","permissions":[],"reason":"r"}`))
	f.Add(uint8(8), []byte(`{"account_id":"`+w.member+`","relationship":"parent","permissions":["view","view"],"reason":"r"}`))
	f.Add(uint8(8), []byte(`{"account_id":"`+w.member+`","relationship":"parent","permissions":null,"reason":"r"}`))
	f.Add(uint8(12), []byte(`{"phone":"12345678901234567890"}`))
	tokens := map[domain.Role]string{}
	for _, c := range cmds {
		tokens[c.role] = e.token(c.role, w.worker)
	}
	tokens[domain.RoleManager] = e.token(domain.RoleManager, w.manager)

	head := func(t *testing.T) string {
		p, err := e.store.Head(t.Context())
		require.NoError(t, err)
		return p.String()
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		c := cmds[int(op)%len(cmds)]
		before := head(t)
		hr, err := http.NewRequest(c.method, e.srv.URL+c.path, bytes.NewReader(body))
		require.NoError(t, err)
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+tokens[c.role])
		res, err := e.srv.Client().Do(hr)
		require.NoError(t, err)
		answer, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		require.NoError(t, err)
		require.Less(t, res.StatusCode, 500, "%s %s %q: %s", c.method, c.path, body, answer)
		if res.StatusCode >= 400 {
			require.Equal(t, before, head(t), "a %d appended: %s %s %q: %s", res.StatusCode, c.method, c.path, body, answer)
			require.Equal(t, problemContentType, res.Header.Get("Content-Type"))
		}
	})
}

// FuzzChecksBody feeds arbitrary bodies to decodeChecks, the decoder of
// POST /v1/checks. It never panics; it refuses with a 400 invalid problem,
// or accepts 1 to 1,000 checks, each with an account and exactly one of a
// child and a carer, whose values encoding/json reads the same from the
// body (the strict decoder accepts nothing the plain one reads otherwise),
// and which encode back to a body it decodes to the same checks.
func FuzzChecksBody(f *testing.F) {
	a, c := "123e4567-e89b-12d3-a456-426614174000", "223e4567-e89b-12d3-a456-426614174000"
	item := checkItem(a, "child_id", c, "view")
	for _, seed := range []string{
		checksBody([]string{item}),
		checksBody([]string{item, checkItem(a, "carer_id", a, "record")}, `"at":"2026-03-02T09:00:00+01:00"`, `"min_position":"12"`),
		checksBody([]string{item, item}, `"min_position":"12.3"`),
		`{"checks":[]}`, `{"checks":null}`, `{}`, `[]`, ``, `{"checks":[{}]}`,
		`{"checks":[{"account_id":"` + a + `","child_id":"` + c + `","carer_id":"` + c + `","permission":"view"}]}`,
		`{"checks":[{"ACCOUNT_ID":"` + a + `","child_id":"` + c + `","permission":"view"}]}`,
		`{"checks":[{"account_id":"` + a + `","child_id":"` + c + `","permission":"view","permission":"view"}]}`,
		`{"checks":[{"account_id":"` + a + `","child_id":"` + c + `","permission":"view\u0000"}]}`,
		`{"checks":[{"account_id":"{` + a + `}","child_id":"` + c + `","permission":"view"}]}`,
		"{\"checks\":[" + item + "]}\xff",
		checksBody([]string{item}, `"at":"9999-12-31T23:59:59.999999999-01:00"`),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeChecks(body)
		if err != nil {
			pr := problemFor(err)
			require.Equal(t, 400, pr.Status, err.Error())
			require.Equal(t, codeInvalid, string(pr.Code))
			return
		}
		require.NotEmpty(t, p.Items)
		require.LessOrEqual(t, len(p.Items), queries.MaxChecks)
		var plain api.ChecksRequest
		require.NoError(t, json.Unmarshal(body, &plain), "the strict decoder accepted what encoding/json refuses")
		require.Len(t, plain.Checks, len(p.Items))
		items := make([]string, len(p.Items))
		for i, it := range p.Items {
			require.NotEqual(t, uuid.Nil, it.Account)
			require.True(t, (it.Child == uuid.Nil) != (it.Carer == uuid.Nil), "exactly one of child and carer")
			pl := plain.Checks[i]
			require.True(t, strings.EqualFold(it.Account.String(), pl.AccountID))
			require.Equal(t, it.Permission.String(), string(pl.Permission))
			field, id := "child_id", it.Child
			if it.Carer != uuid.Nil {
				field, id = "carer_id", it.Carer
				require.True(t, pl.CarerID != nil && strings.EqualFold(id.String(), *pl.CarerID))
			} else {
				require.True(t, pl.ChildID != nil && strings.EqualFold(id.String(), *pl.ChildID))
			}
			items[i] = checkItem(it.Account.String(), field, id.String(), it.Permission.String())
		}
		var extra []string
		if !p.At.IsZero() {
			extra = append(extra, `"at":"`+p.At.Format(time.RFC3339Nano)+`"`)
		}
		if p.Given {
			extra = append(extra, `"min_position":"`+p.Min.String()+`"`)
		}
		again, err := decodeChecks([]byte(checksBody(items, extra...)))
		require.NoError(t, err)
		require.Equal(t, p, again)
	})
}

// FuzzDecodeViews feeds arbitrary bodies to the decoder of POST /v1/views.
// Whatever the body, it never panics, and it either refuses it with a 400
// "invalid" problem or returns 1 to queries.MaxViews views, each with
// non-nil ids and a known permission: what the query service then checks
// against the clock and keeps.
func FuzzDecodeViews(f *testing.F) {
	one := `{"account_id":"3f2b8c1e-9d4a-4c6b-8e2f-1a7d5c9b0e34","child_id":"52a6d120-2009-8730-af53-f966f4aaa325","permission":"view","viewed_at":"2026-03-02T09:00:00Z"}`
	for _, seed := range []string{
		one,
		`{"views":[` + one + `,` + one + `]}`,
		`{"views":[]}`,
		`{"views":null}`,
		`{"views":[` + one + `],"account_id":"x"}`,
		strings.Replace(one, `"view"`, `"\u202eview"`, 1),
		strings.Replace(one, `}`, `,"x":null}`, 1),
		strings.Replace(one, `"permission"`, `"Permission"`, 1),
		`{"views":[[` + one + `]]}`,
		`{"views":{"a":1}}`,
		"{\"views\":[\"\xff\"]}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		views, err := decodeViews(body)
		if err != nil {
			var he *httpError
			require.ErrorAs(t, err, &he)
			require.Equal(t, http.StatusBadRequest, he.status)
			require.Equal(t, codeInvalid, he.code)
			return
		}
		require.NotEmpty(t, views)
		require.LessOrEqual(t, len(views), queries.MaxViews)
		for _, v := range views {
			require.NotEqual(t, uuid.Nil, v.Account)
			require.NotEqual(t, uuid.Nil, v.Child)
			require.NotEqual(t, "unknown", v.Permission.String())
			require.False(t, v.ViewedAt.IsZero())
		}
	})
}
