package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// quietLog discards.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// publicKey fetches GET /v1/ledger/public-key as any authenticated caller.
func (e *env) publicKey() note.Verifier {
	e.t.Helper()
	res := e.do(req{method: "GET", path: "/v1/ledger/public-key", role: domain.RoleWorker})
	require.Equal(e.t, 200, res.status, string(res.body))
	require.Equal(e.t, "text/plain; charset=utf-8", res.header.Get("Content-Type"))
	require.True(e.t, strings.HasSuffix(string(res.body), "\n"))
	v, err := ledger.ParseVerifierKey(string(res.body))
	require.NoError(e.t, err)
	return v
}

// checkpoint fetches GET /v1/ledger/checkpoint and opens it with v.
func (e *env) checkpoint(v note.Verifier) ledger.Checkpoint {
	e.t.Helper()
	res := e.do(req{method: "GET", path: "/v1/ledger/checkpoint", role: domain.RoleAuditor})
	require.Equal(e.t, 200, res.status, string(res.body))
	require.Equal(e.t, "text/plain; charset=utf-8", res.header.Get("Content-Type"))
	cp, err := ledger.OpenCheckpoint(res.body, v)
	require.NoError(e.t, err)
	return cp
}

// inclusion is a decoded inclusion proof answer.
type inclusion struct {
	index, size int64
	leafHash    tlog.Hash
	proof       tlog.RecordProof
	position    string
	eventID     string
	data        []byte
}

func (e *env) inclusion(query string) inclusion {
	e.t.Helper()
	m := e.ok(req{method: "GET", path: "/v1/ledger/proof/inclusion?" + query, role: domain.RoleAuditor}, 200)
	var in inclusion
	in.index, in.size = int64(m["leaf_index"].(float64)), int64(m["tree_size"].(float64))
	in.leafHash = parseHash(e.t, m["leaf_hash"].(string))
	for _, h := range m["hashes"].([]any) {
		in.proof = append(in.proof, parseHash(e.t, h.(string)))
	}
	in.position, in.eventID = m["position"].(string), m["event_id"].(string)
	var err error
	in.data, err = base64.StdEncoding.DecodeString(m["leaf_data"].(string))
	require.NoError(e.t, err)
	return in
}

func (e *env) consistency(query string) (from, to int64, proof tlog.TreeProof) {
	e.t.Helper()
	m := e.ok(req{method: "GET", path: "/v1/ledger/proof/consistency?" + query, role: domain.RoleAuditor}, 200)
	for _, h := range m["hashes"].([]any) {
		proof = append(proof, parseHash(e.t, h.(string)))
	}
	return int64(m["from_size"].(float64)), int64(m["to_size"].(float64)), proof
}

func parseHash(t testing.TB, s string) tlog.Hash {
	t.Helper()
	h, err := tlog.ParseHash(s)
	require.NoError(t, err)
	return h
}

// checkInclusion verifies in against cp using only what the API answered:
// the leaf hash is recomputed from leaf_data, which must decode to the
// event named.
func checkInclusion(t *testing.T, in inclusion, cp ledger.Checkpoint) {
	t.Helper()
	h := tlog.RecordHash(in.data)
	require.Equal(t, in.leafHash, h, "leaf_hash is SHA-256(0x00 || leaf_data)")
	leaf, err := ledger.DecodeLeaf(in.data)
	require.NoError(t, err)
	require.Equal(t, in.eventID, leaf.EventID.String())
	require.Equal(t, cp.Size, in.size)
	require.NoError(t, tlog.CheckRecord(in.proof, cp.Size, cp.Root, in.index, h))
}

// TestRule_R23_ProofsCheckWithThePublicKeyAlone: an auditor holding only the public
// key and the API's answers checks that every event is in the signed tree,
// and that a later checkpoint extends an earlier one.
func TestRule_R23_ProofsCheckWithThePublicKeyAlone(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			v := e.publicKey()
			old := e.checkpoint(v)
			recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
			require.NoError(t, err)
			require.EqualValues(t, len(recs), old.Size)

			for i, rec := range recs {
				by := "event_id=" + rec.ID.String()
				if i%2 == 1 {
					by = "position=" + rec.Position.String()
				}
				in := e.inclusion(by)
				require.EqualValues(t, i, in.index)
				require.Equal(t, rec.Position.String(), in.position)
				require.Equal(t, ledger.LeafData(rec), in.data)
				checkInclusion(t, in, old)
				leaf, err := ledger.DecodeLeaf(in.data)
				require.NoError(t, err)
				require.Equal(t, rec.Type, leaf.Type, "leaf_data tells what the event was")
				require.Equal(t, rec.Stream, leaf.Stream)

				// A proof does not prove another leaf, nor a changed event.
				other := tlog.RecordHash(ledger.LeafData(recs[(i+1)%len(recs)]))
				require.Error(t, tlog.CheckRecord(in.proof, old.Size, old.Root, in.index, other))
				forged := rec
				forged.Meta.Reason = "edited"
				require.Error(t, tlog.CheckRecord(in.proof, old.Size, old.Root, in.index, ledger.LeafHash(forged)))
			}

			// The log grows; the new checkpoint extends the old one.
			e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/grants/" + w.member + "/revoke", role: domain.RoleWorker,
				sub: w.worker, body: `{"reason":"review"}`}, 200)
			last := e.ok(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"NCC-0002"}`}, 201)
			p, err := eventlog.ParsePosition(last["position"].(string))
			require.NoError(t, err)
			e.waitFor(p)
			cur := e.checkpoint(v)
			require.Greater(t, cur.Size, old.Size)
			from, to, proof := e.consistency(fmt.Sprintf("from_size=%d&to_size=%d", old.Size, cur.Size))
			require.Equal(t, old.Size, from)
			require.Equal(t, cur.Size, to)
			require.NoError(t, tlog.CheckTree(proof, cur.Size, cur.Root, old.Size, old.Root))
			_, to, proof = e.consistency(fmt.Sprintf("from_size=%d", old.Size))
			require.Equal(t, cur.Size, to, "to_size defaults to the current checkpoint's")
			require.NoError(t, tlog.CheckTree(proof, cur.Size, cur.Root, old.Size, old.Root))
			_, _, proof = e.consistency(fmt.Sprintf("from_size=%d&to_size=%d", cur.Size, cur.Size))
			require.Empty(t, proof)
			require.NoError(t, tlog.CheckTree(proof, cur.Size, cur.Root, cur.Size, cur.Root))
			// A tree that is not the old one's extension fails the check.
			forkedRoot := old.Root
			forkedRoot[0] ^= 1
			require.Error(t, tlog.CheckTree(proof, cur.Size, cur.Root, old.Size, forkedRoot))

			// An old event proved against the old checkpoint, and the new one.
			in := e.inclusion(fmt.Sprintf("event_id=%s&tree_size=%d", recs[2].ID, old.Size))
			checkInclusion(t, in, old)
			in = e.inclusion("event_id=" + recs[2].ID.String())
			checkInclusion(t, in, cur)
			in = e.inclusion("position=" + last["position"].(string))
			require.EqualValues(t, cur.Size-1, in.index)
			checkInclusion(t, in, cur)

			// A checkpoint does not open with another key.
			_, otherKey, err := note.GenerateKey(rand.Reader, "accessledger-other")
			require.NoError(t, err)
			ov, err := note.NewVerifier(otherKey)
			require.NoError(t, err)
			res := e.do(req{method: "GET", path: "/v1/ledger/checkpoint", role: domain.RoleService})
			require.Equal(t, 200, res.status)
			_, err = ledger.OpenCheckpoint(res.body, ov)
			require.ErrorIs(t, err, ledger.ErrBadCheckpoint)

			require.Contains(t, string(e.do(req{method: "GET", path: "/metrics"}).body), "accessledger_ledger_ok 1\n")
			require.Contains(t, string(e.do(req{method: "GET", path: "/metrics"}).body),
				"accessledger_ledger_checkpoint_size "+strconv.FormatInt(cur.Size, 10)+"\n")
		})
	}
}

func TestLedger_Refusals(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	e.buildWorld()
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	n := int64(len(recs))
	third := recs[3] // leaf 3
	for _, tc := range []struct {
		path   string
		role   domain.Role
		status int
		code   string
		detail string
	}{
		// Inclusion.
		{"/v1/ledger/proof/inclusion", domain.RoleAuditor, 400, codeInvalid, "exactly one of position and event_id"},
		{"/v1/ledger/proof/inclusion?position=1&event_id=" + third.ID.String(), domain.RoleAuditor, 400, codeInvalid, "exactly one"},
		{"/v1/ledger/proof/inclusion?event_id=not-a-uuid", domain.RoleAuditor, 400, codeInvalid, "event_id: must be a UUID"},
		{"/v1/ledger/proof/inclusion?position=x.y", domain.RoleAuditor, 400, codeInvalid, "position: invalid position token"},
		{"/v1/ledger/proof/inclusion?position=", domain.RoleAuditor, 400, codeInvalid, "empty position token"},
		{"/v1/ledger/proof/inclusion?position=1&tree_size=0", domain.RoleAuditor, 400, codeInvalid, "tree_size: must be an integer from 1"},
		{"/v1/ledger/proof/inclusion?position=1&tree_size=-3", domain.RoleAuditor, 400, codeInvalid, "tree_size"},
		{"/v1/ledger/proof/inclusion?position=1&tree_size=many", domain.RoleAuditor, 400, codeInvalid, "tree_size"},
		{"/v1/ledger/proof/inclusion?event_id=" + third.ID.String() + "&tree_size=3", domain.RoleAuditor, 400, codeInvalid,
			"tree_size 3 does not include leaf 3"},
		{"/v1/ledger/proof/inclusion?position=1&size=3", domain.RoleAuditor, 400, codeInvalid, `unknown query parameter "size"`},
		{"/v1/ledger/proof/inclusion?position=1&position=2", domain.RoleAuditor, 400, codeInvalid, "more than once"},
		{"/v1/ledger/proof/inclusion?event_id=" + uuid.NewString(), domain.RoleAuditor, 404, codeNotFound, "no leaf for event"},
		{"/v1/ledger/proof/inclusion?position=999", domain.RoleAuditor, 404, codeNotFound, "no leaf for position 999"},
		{"/v1/ledger/proof/inclusion?position=1&tree_size=" + strconv.FormatInt(n+1, 10), domain.RoleAuditor, 404, codeNotFound,
			fmt.Sprintf("tree_size %d is beyond the stored tree (%d leaves)", n+1, n)},
		// Consistency.
		{"/v1/ledger/proof/consistency", domain.RoleAuditor, 400, codeInvalid, "from_size: required"},
		{"/v1/ledger/proof/consistency?from_size=0", domain.RoleAuditor, 400, codeInvalid, "from_size: must be an integer from 1"},
		{"/v1/ledger/proof/consistency?from_size=-1", domain.RoleAuditor, 400, codeInvalid, "from_size"},
		{"/v1/ledger/proof/consistency?from_size=1&to_size=0", domain.RoleAuditor, 400, codeInvalid, "to_size"},
		{"/v1/ledger/proof/consistency?from_size=3&to_size=2", domain.RoleAuditor, 400, codeInvalid, "from_size 3 is above to_size 2"},
		{"/v1/ledger/proof/consistency?from_size=" + strconv.FormatInt(n+1, 10), domain.RoleAuditor, 400, codeInvalid,
			"above the current checkpoint's size"},
		{"/v1/ledger/proof/consistency?from_size=1&to_size=" + strconv.FormatInt(n+1, 10), domain.RoleAuditor, 404, codeNotFound,
			"beyond the stored tree"},
		{"/v1/ledger/proof/consistency?from_size=1&min_position=1", domain.RoleAuditor, 400, codeInvalid, "unknown query parameter"},
		{"/v1/ledger/checkpoint?x=1", domain.RoleAuditor, 400, codeInvalid, "this route takes none"},
		// Roles.
		{"/v1/ledger/checkpoint", domain.RoleWorker, 403, codeForbidden, "role worker may not call GET /v1/ledger/checkpoint"},
		{"/v1/ledger/checkpoint", domain.RolePortalsTeam, 403, codeForbidden, "role portals_team"},
		{"/v1/ledger/proof/inclusion?position=1", domain.RoleService, 403, codeForbidden, "role service"},
		{"/v1/ledger/proof/consistency?from_size=1", domain.RoleManager, 403, codeForbidden, "role manager"},
		{"/v1/ledger/public-key", "", 401, codeUnauthenticated, "no bearer token"},
		{"/v1/ledger/checkpoint", "", 401, codeUnauthenticated, "no bearer token"},
	} {
		t.Run(tc.path+" as "+string(tc.role), func(t *testing.T) {
			p := e.do(req{method: "GET", path: tc.path, role: tc.role, sub: "nosy-" + string(tc.role)}).problem(t, tc.status, tc.code)
			require.Contains(t, p.Detail, tc.detail)
		})
	}
	// Refused for their role, the queries are in the security log.
	sl := e.ok(req{method: "GET", path: "/v1/security-log?command=query_ledger_checkpoint", role: domain.RoleAuditor}, 200)
	require.Len(t, sl["entries"], 2)
	sl = e.ok(req{method: "GET", path: "/v1/security-log?actor=nosy-service", role: domain.RoleAuditor}, 200)
	require.Equal(t, "query_ledger_inclusion_proof", sl["entries"].([]any)[0].(map[string]any)["command"])
	// The service may read the checkpoint, anyone the key.
	require.Equal(t, 200, e.do(req{method: "GET", path: "/v1/ledger/checkpoint", role: domain.RoleService}).status)
	for _, r := range []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RolePortalsTeam, domain.RoleService} {
		require.Equal(t, 200, e.do(req{method: "GET", path: "/v1/ledger/public-key", role: r}).status)
	}
}

// TestLedger_Off: a server without the ledger answers its routes 503 and
// everything else as before.
func TestLedger_Off(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { c.Q.Ledger, c.Q.LedgerLog = nil, nil })
	w := e.buildWorld()
	for _, path := range []string{"/v1/ledger/checkpoint", "/v1/ledger/public-key", "/v1/ledger/proof/inclusion?position=1",
		"/v1/ledger/proof/consistency?from_size=1"} {
		p := e.do(req{method: "GET", path: path, role: domain.RoleAuditor}).problem(t, 503, codeInternal)
		require.Contains(t, p.Detail, "without the ledger", path)
	}
	e.ok(req{method: "GET", path: "/readyz"}, 200)
	e.ok(req{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view", role: domain.RoleService}, 200)
	require.NotContains(t, string(e.do(req{method: "GET", path: "/metrics"}).body), "accessledger_ledger_")
}

// TestLedger_NotVerifiedYet: before the ledger's start-up check has
// finished, the server is not ready and signs nothing, but answers as
// before.
func TestLedger_NotVerifiedYet(t *testing.T) {
	var led *ledger.Ledger
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) {
		led = newLedger(t, c.DB, quietLog)
		c.Q.Ledger = led
	})
	p := e.do(req{method: "GET", path: "/readyz"}).problem(t, 503, codeStale)
	require.Contains(t, p.Detail, "ledger has not finished verifying")
	p = e.do(req{method: "GET", path: "/v1/ledger/checkpoint", role: domain.RoleAuditor}).problem(t, 503, codeStale)
	require.Contains(t, p.Detail, "ledger has not finished verifying")
	p = e.do(req{method: "GET", path: "/v1/ledger/proof/consistency?from_size=1", role: domain.RoleAuditor}).problem(t, 503, codeStale)
	require.Contains(t, p.Detail, "ledger has not finished verifying")
	e.publicKey()
	// No decision, and no command, before the log is verified.
	p = e.do(req{method: "GET", path: "/v1/check?account_id=" + uuid.NewString() + "&child_id=" + uuid.NewString() + "&permission=view",
		role: domain.RoleService}).problem(t, 503, codeStale)
	require.Contains(t, p.Detail, "ledger has not finished verifying")
	e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: `{"reference":"NCC-0009"}`}).problem(t, 503, codeStale)
	require.Contains(t, string(e.do(req{method: "GET", path: "/metrics"}).body), "accessledger_ledger_ok 0\n")

	_, err := led.Guard(context.Background(), e.store, ledger.VerifyOptions{})
	require.NoError(t, err)
	e.ok(req{method: "GET", path: "/readyz"}, 200)
	w := e.buildWorld()
	c := e.ok(req{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view", role: domain.RoleService}, 200)
	require.Equal(t, true, c["allowed"])
	cp := e.checkpoint(e.publicKey())
	require.Positive(t, cp.Size)
	require.Contains(t, string(e.do(req{method: "GET", path: "/metrics"}).body), "accessledger_ledger_ok 1\n")
}

// TestRule_R23_MismatchStopsDecisions: an event edited in the stored log is
// found by the ledger's start-up check; from then on the server answers no
// decision, says so in /readyz with the first bad position, and still
// answers the ledger's routes and the policy.
func TestRule_R23_MismatchStopsDecisions(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newSQLEnv(t, b.URL(t))
			w := e.buildWorld()
			v := e.publicKey()
			cp := e.checkpoint(v) // signed before the edit
			_, watch, cancelWatch := e.openWatch("", nil)
			defer cancelWatch()
			recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
			require.NoError(t, err)
			require.Equal(t, eventlog.At(2), recs[1].Position)
			before := e.head()

			_, err = e.db.ExecContext(context.Background(), "UPDATE events SET reason = 'x' WHERE position = 2")
			require.NoError(t, err)
			rep, err := e.ledger.Guard(context.Background(), e.store, ledger.VerifyOptions{})
			require.ErrorIs(t, err, ledger.ErrMismatch)
			first, _ := rep.FirstBad()
			require.Equal(t, ledger.KindEdited, first.Kind)

			res := e.do(req{method: "GET", path: "/readyz"})
			p := res.problem(t, 503, codeLedgerMismatch)
			require.Contains(t, p.Detail, "first bad position 2 (edited, leaf 1)")
			require.NotContains(t, p.Detail, recs[1].ID.String(), "no event detail without a token")
			require.Equal(t, "1", res.header.Get("Retry-After"))

			// Every decision, query and command is refused.
			for _, r := range []req{
				{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view", role: domain.RoleService},
				{method: "GET", path: "/v1/accounts/" + w.carer + "/children", role: domain.RoleService},
				{method: "GET", path: "/v1/children/" + w.child + "/viewers", role: domain.RoleWorker},
				{method: "GET", path: "/v1/children/" + w.child + "/history", role: domain.RoleAuditor},
				{method: "GET", path: "/v1/accounts/" + w.member, role: domain.RoleAuditor},
				{method: "GET", path: "/v1/accounts", role: domain.RoleAuditor},
				{method: "GET", path: "/v1/audit", role: domain.RoleAuditor},
				{method: "GET", path: "/v1/audit/verify", role: domain.RoleAuditor},
				{method: "GET", path: "/v1/security-log", role: domain.RoleAuditor},
				{method: "GET", path: "/v1/watch", role: domain.RoleService},
				{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: `{"reference":"NCC-0003"}`},
				{method: "POST", path: "/v1/children/" + w.child + "/grants/" + w.member + "/revoke", role: domain.RoleWorker, sub: w.worker,
					body: `{"reason":"review"}`},
			} {
				p := e.do(r).problem(t, 503, codeLedgerMismatch)
				require.Contains(t, p.Detail, "position 2", r.path)
			}
			require.Equal(t, before, e.head(), "nothing was appended")
			// Authentication and roles come first.
			e.do(req{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view"}).
				problem(t, 401, codeUnauthenticated)
			e.do(req{method: "GET", path: "/v1/audit", role: domain.RoleWorker}).problem(t, 403, codeForbidden)

			// The open watch stream ends with a reset that says why.
			ended := false
			for !ended {
				select {
				case ev, ok := <-watch:
					require.True(t, ok, "the stream ended without a reset")
					if ev.event == "reset" {
						require.Contains(t, ev.data, "first bad position 2")
						ended = true
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no reset")
				}
			}

			// Still served: the policy, the key, health, metrics, proofs.
			e.ok(req{method: "GET", path: "/v1/policy", role: domain.RoleWorker}, 200)
			require.Equal(t, v.Name(), e.publicKey().Name())
			e.ok(req{method: "GET", path: "/healthz"}, 200)
			require.Contains(t, string(e.do(req{method: "GET", path: "/metrics"}).body), "accessledger_ledger_ok 0\n")
			p = e.do(req{method: "GET", path: "/v1/ledger/checkpoint", role: domain.RoleAuditor}).problem(t, 503, codeLedgerMismatch)
			require.Contains(t, p.Detail, "first bad position 2")
			// The edited event's proof is refused; the others still check
			// against the checkpoint signed before the edit.
			p = e.do(req{method: "GET", path: fmt.Sprintf("/v1/ledger/proof/inclusion?position=2&tree_size=%d", cp.Size),
				role: domain.RoleAuditor}).problem(t, 503, codeLedgerMismatch)
			require.Contains(t, p.Detail, "position 2 (edited, leaf 1)")
			checkInclusion(t, e.inclusion(fmt.Sprintf("position=3&tree_size=%d", cp.Size)), cp)
			_, _, proof := e.consistency(fmt.Sprintf("from_size=1&to_size=%d", cp.Size))
			require.NotEmpty(t, proof)
			e.do(req{method: "GET", path: "/v1/ledger/proof/inclusion?position=3", role: domain.RoleAuditor}).problem(t, 503, codeLedgerMismatch)
		})
	}
}

// TestLedger_InclusionFindsAnEventChangedLater: an event changed while the
// server runs (after the start-up check) no longer matches its leaf: its
// proof is refused rather than served with bytes that do not hash to it.
func TestLedger_InclusionFindsAnEventChangedLater(t *testing.T) {
	e := newSQLEnv(t, sqltest.SQLiteMemory(t))
	e.buildWorld()
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, query, kind string
	}{
		{"edited", "UPDATE events SET actor_id = 'someone-else' WHERE position = 4", "edited"},
		{"deleted", "DELETE FROM events WHERE position = 5", "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.db.ExecContext(context.Background(), tc.query)
			require.NoError(t, err)
			pos := recs[3].Position
			if tc.name == "deleted" {
				pos = recs[4].Position
			}
			p := e.do(req{method: "GET", path: "/v1/ledger/proof/inclusion?position=" + url.QueryEscape(pos.String()),
				role: domain.RoleAuditor}).problem(t, 503, codeLedgerMismatch)
			require.Contains(t, p.Detail, "first bad position "+pos.String()+" ("+tc.kind)
			require.Contains(t, e.logs.String(), "a stored event no longer matches its leaf")
		})
	}
}
