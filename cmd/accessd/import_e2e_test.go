package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// The end-to-end tests of accessd import (R24): a file of an older
// system's records is imported into a deployment on SQLite and on
// PostgreSQL while its engine runs, and the engine answers checks and
// history at the records' real dates.

// importBackends are the stores import is proved on: the embedded SQLite
// default, and PostgreSQL (skipped without ACCESSLEDGER_TEST_POSTGRES_DSN).
func importBackends() []e2eBackend {
	return []e2eBackend{
		{name: "sqlite", flags: func(*testing.T) []string { return nil }},
		{name: "postgres", flags: func(t *testing.T) []string {
			return []string{"--event-store", sqltest.Postgres(t), "--master-key", filepath.Join(privateDir(t), keystore.MasterKeyFileName)}
		}},
	}
}

// legacyFile writes the lines to a file of mode 0600 and returns its path.
func legacyFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(privateDir(t), "legacy.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return path
}

// importCmd runs accessd import on s's stores with args.
func importCmd(t *testing.T, s *e2eServer, args ...string) (int, string, string) {
	t.Helper()
	all := append([]string{"import", "--data-dir", s.dir, "--log-level", "error"}, s.storeFlags()...)
	return runCmd(t, context.Background(), noEnv, append(all, args...)...)
}

func TestRule_R24_ImportedRecordsKeepTheirRealDates(t *testing.T) {
	t.Parallel()
	for _, b := range importBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startServerIn(t, privateDir(t), b.flags(t)...)
			w := newWorld(s)
			sfx := strings.ToLower(uuid.NewString()[:8])
			ref, carerEmail, granEmail := "NCC-2019-"+sfx, "carer-"+sfx+"@example.org", "gran-"+sfx+"@example.org"
			at := func(s string) time.Time { v, err := time.Parse(time.RFC3339, s); require.NoError(t, err); return v }
			good := []string{
				// Placements and grants first: a file may list its lines in any order.
				`{"kind":"placement","legacy_id":"PL-` + sfx + `","child_reference":"` + ref + `","carer_email":"` + carerEmail +
					`","started_at":"2019-03-10T00:00:00Z","ended_at":"2021-06-30T00:00:00Z"}`,
				`{"kind":"grant","child_reference":"` + ref + `","email":"` + granEmail +
					`","relationship":"network_member","permissions":["view"],"granted_at":"2019-05-01T00:00:00Z","revoked_at":"2022-01-01T00:00:00Z","reason":"grandmother"}`,
				`{"kind":"child","reference":"` + ref + `","worker_id":"` + w.worker.sub + `","registered_at":"2019-03-01T09:00:00Z"}`,
				`{"kind":"account","email":"` + carerEmail + `","account_kind":"foster_carer","invited_at":"2019-03-02T09:00:00Z",` +
					`"activated_at":"2019-03-05T10:00:00Z","identity_subject":"idp|carer-` + sfx + `"}`,
				`{"kind":"account","email":"` + granEmail + `","account_kind":"network_member","invited_at":"2019-04-01T09:00:00Z",` +
					`"activated_at":"2019-04-02T09:00:00Z","identity_subject":"idp|gran-` + sfx + `"}`,
			}
			file := legacyFile(t, good...)
			before := s.head()

			// A dry run checks and appends nothing.
			code, out, errOut := importCmd(t, s, "--file", file, "--dry-run")
			require.Equal(t, exitOK, code, out+errOut)
			require.Contains(t, out, "would append 12 events to 5 streams; nothing appended")
			require.Equal(t, before, s.head())

			// A bad line: the whole file is refused, the line named, its
			// values not shown, and nothing appended.
			bad := legacyFile(t, append(append([]string(nil), good...),
				`{"kind":"placement","legacy_id":"PL-2-`+sfx+`","child_reference":"`+ref+`","carer_email":"`+carerEmail+
					`","started_at":"2023-03-10T00:00:00Z","ended_at":"2022-06-30T00:00:00Z"}`,
				`{"kind":"grant","child_reference":"`+ref+`","email":"`+carerEmail+
					`","relationship":"parent","permissions":["view"],"granted_at":"2019-05-01T00:00:00Z"}`)...)
			code, out, errOut = importCmd(t, s, "--file", bad)
			require.Equal(t, exitError, code, out+errOut)
			require.Contains(t, errOut, "line 6: placement: ")
			require.Contains(t, errOut, "line 7: grant: ")
			require.Contains(t, out, "2 bad lines; nothing appended")
			require.NotContains(t, out+errOut, ref)
			require.NotContains(t, out+errOut, carerEmail)
			require.Equal(t, before, s.head())

			// The import, while the engine runs.
			code, out, errOut = importCmd(t, s, "--file", file, "--actor", "ops-ian")
			require.Equal(t, exitOK, code, out+errOut)
			require.Contains(t, out, "appended:  12 events to 5 streams")
			require.Equal(t, before+12, s.head())
			w.last = s.headPosition()

			// Run again: nothing new.
			code, out, errOut = importCmd(t, s, "--file", file)
			require.Equal(t, exitOK, code, out+errOut)
			require.Contains(t, out, "appended:  0 events")
			require.Equal(t, before+12, s.head())

			child := w.childByReference(ref)
			carer, gran := w.accountByEmail(carerEmail), w.accountByEmail(granEmail)

			// Checks at the real dates.
			requireAccess(t, w.check(carer, child, "view", at("2019-03-09T00:00:00Z")), false, "no_relationship")
			requireAccess(t, w.check(carer, child, "record", at("2020-01-01T00:00:00Z")), true, "placement")
			requireAccess(t, w.check(carer, child, "view", at("2021-07-02T00:00:00Z")), true, "grace_period")
			requireAccess(t, w.check(carer, child, "view"), false, "grace_expired")
			requireAccess(t, w.check(gran, child, "view", at("2019-06-01T00:00:00Z")), true, "grant")
			requireAccess(t, w.check(gran, child, "view"), false, "revoked")

			// History shows the access that existed, opened by the
			// import's events.
			ivs := w.history("/v1/children/"+child+"/history", "")
			cs := intervalsOf(ivs, carer)
			require.NotEmpty(t, cs, "%+v", ivs)
			require.True(t, at("2019-03-10T00:00:00Z").Equal(cs[0].From), "%+v", cs[0])
			require.Equal(t, "import:ops-ian", cs[0].OpenedByEvent.Actor)
			require.Equal(t, string(domain.RoleSystem), cs[0].OpenedByEvent.ActorRole)
			gs := intervalsOf(ivs, gran)
			require.NotEmpty(t, gs, "%+v", gs)
			require.True(t, at("2019-05-01T00:00:00Z").Equal(gs[0].From))
			require.True(t, at("2022-01-01T00:00:00Z").Equal(*gs[0].To))

			// The audit trail says the events were imported, and when.
			for _, e := range w.audit("child_id=" + child) {
				require.Equal(t, "import:ops-ian", e.Actor, e.Type)
				require.True(t, e.EffectiveAt.Before(e.RecordedAt), e.Type)
			}
		})
	}
}

// childByReference finds the child with reference (R17).
func (w *e2eWorld) childByReference(ref string) string {
	w.t.Helper()
	var l api.ChildList
	w.get(w.worker, "/v1/children?reference="+url.QueryEscape(ref)).decode(&l)
	require.Len(w.t, l.Children, 1)
	return l.Children[0].ChildID.String()
}

// accountByEmail finds the account of email.
func (w *e2eWorld) accountByEmail(email string) string {
	w.t.Helper()
	var l api.AccountList
	w.get(w.worker, "/v1/accounts?email="+url.QueryEscape(email)).decode(&l)
	require.Len(w.t, l.Accounts, 1)
	return l.Accounts[0].AccountID.String()
}
