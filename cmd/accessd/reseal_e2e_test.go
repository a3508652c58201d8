package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/reseal/resealtest"
)

// The end-to-end tests of accessd reseal: a deployment whose log was
// partly written before personal data was sealed is resealed into a new
// data directory, and an engine served on it answers as the old one did.

// resealBackend is where a reseal test keeps its logs.
type resealBackend struct {
	name string
	// store returns the --event-store of a new deployment ("" = the
	// embedded default in its data directory).
	store func(t *testing.T) string
}

func resealBackends() []resealBackend {
	return []resealBackend{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return sqltest.Postgres(t) }},
	}
}

// storeFlag is --event-store URL, or nothing for the embedded default.
func storeFlag(flag, url string) []string {
	if url == "" {
		return nil
	}
	return []string{flag, url}
}

// writeLegacy writes a history as an engine before sealing did into the
// event store of the deployment in dir.
func writeLegacy(t *testing.T, dir, store string) *resealtest.Legacy {
	t.Helper()
	ctx := context.Background()
	st, err := engine.OpenStores(ctx, &engine.Config{DataDir: dir, EventStore: store}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer st.Close()
	l, err := resealtest.WriteLegacy(ctx, st.Events.Log, time.Now(), strings.ToLower(uuid.NewString()[:8]))
	require.NoError(t, err)
	return l
}

// on returns a client of s with c's token (signed with the source's
// secret).
func on(s *e2eServer, c *e2eClient) *e2eClient {
	return &e2eClient{s: s, role: c.role, sub: c.sub, token: c.token}
}

// answers asks s every query of paths as the client each names, at
// least at position min, and returns the answers without their position
// (a consistency token).
func answers(t *testing.T, s *e2eServer, queries map[string]*e2eClient, min eventlog.Position) map[string]any {
	t.Helper()
	out := map[string]any{}
	for path, c := range queries {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		r := on(s, c).do("GET", path+sep+"min_position="+min.String(), nil)
		require.Equal(t, http.StatusOK, r.status, r.String())
		var v any
		require.NoError(t, json.Unmarshal(r.body, &v))
		out[path] = dropPositions(v)
	}
	return out
}

func dropPositions(v any) any {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "position")
		for k, e := range x {
			x[k] = dropPositions(e)
		}
	case []any:
		for i, e := range x {
			x[i] = dropPositions(e)
		}
	}
	return v
}

// TestReseal_TheNewDeploymentAnswersAsTheOldOne: a log written partly by
// an engine before sealing (plain values, name-based ids: accounts
// invited, linked, activated, a phone, a child, a placement, grants with
// reasons) and partly by the current engine (an account made, granted
// and erased by the dpo; the older child erased) is resealed. The new
// log holds no personal value in plain text, and not in its files; an
// engine served on it answers checks, accounts, children's records and
// histories as the old one did, with the old tokens; it finds the
// renamed identity streams and the name-based accounts (R10); its ledger
// verifies.
func TestReseal_TheNewDeploymentAnswersAsTheOldOne(t *testing.T) {
	t.Parallel()
	for _, b := range resealBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srcDir, srcStore := privateDir(t), b.store(t)
			legacy := writeLegacy(t, srcDir, srcStore)
			src := startServerIn(t, srcDir, storeFlag("--event-store", srcStore)...)
			w := newWorld(src)
			ann := src.as(domain.RoleWorker, resealtest.Worker.ID)
			dpo := src.as(domain.RoleDPO, "dpo-dee")
			child, erasable := legacy.Child.String(), legacy.ErasableChild.String()
			current := w.account(string(domain.KindNetworkMember))
			const reason = "weekend contact agreed with the grandmother"
			w.grant(ann, child, current.id, string(domain.RelNetworkMember), []string{domain.PermView}, reason)
			gone := w.account(string(domain.KindNetworkMember))
			w.grant(ann, child, gone.id, string(domain.RelNetworkMember), []string{domain.PermView}, "short-lived")
			w.cmd(dpo, "POST", "/v1/accounts/"+gone.id+"/erasure", map[string]string{"reason": "Art. 17 request DPO-9"}, http.StatusOK)
			w.cmd(dpo, "POST", "/v1/children/"+erasable+"/erasure", map[string]string{"reason": "retention ended"}, http.StatusOK)

			accounts := []string{legacy.Carer.ID.String(), legacy.Member.ID.String(), current.id, gone.id}
			times := []time.Time{legacy.Writer.Now.Add(-30 * time.Minute), now()}
			queries := map[string]*e2eClient{}
			for _, a := range accounts {
				for _, c := range []string{child, erasable} {
					for _, p := range []string{domain.PermView, domain.PermRecord} {
						for _, at := range times {
							queries["/v1/check?account_id="+a+"&child_id="+c+"&permission="+p+"&at="+url.QueryEscape(rfc(at))] = w.service
						}
					}
				}
				queries["/v1/accounts/"+a+"?at="+url.QueryEscape(rfc(times[1]))] = w.auditor
				queries["/v1/accounts/"+a+"/history"] = w.auditor
			}
			for _, c := range []string{child, erasable} {
				queries["/v1/children/"+c+"?at="+url.QueryEscape(rfc(times[1]))] = ann
				queries["/v1/children/"+c+"/history"] = w.auditor
			}
			erasedRecord := "/v1/children/" + erasable + "?at=" + url.QueryEscape(rfc(times[1]))
			before := answers(t, src, queries, w.last)
			require.Contains(t, mustJSON(t, before["/v1/children/"+child+"?at="+url.QueryEscape(rfc(times[1]))]), legacy.Reference,
				"the old engine answers the reference")
			// The old log holds the erased child's reference in plain text
			// (written before sealing): the old engine answers it as erased
			// all the same (the layer knows the subject is erased); the new
			// log holds a stand-in.
			require.NotContains(t, mustJSON(t, before[erasedRecord]), legacy.ErasableReference)
			require.Nil(t, before[erasedRecord].(map[string]any)["reference"])
			src.stop()

			dstDir := filepath.Join(privateDir(t), "new")
			dstStore := b.store(t)
			args := append([]string{"reseal", "--data-dir", srcDir, "--to-data-dir", dstDir, "--log-level", "warn"},
				append(storeFlag("--event-store", srcStore), storeFlag("--to-event-store", dstStore)...)...)
			code, out, errOut := runCmd(t, context.Background(), noEnv, args...)
			require.Equal(t, exitOK, code, out+errOut)
			require.Regexp(t, `(?m)^OK: `, out)
			require.Regexp(t, `(?m)^erased subjects: +2 `, out)
			require.Regexp(t, `(?m)^identity streams: +2 renamed to keyed names, 1 keyed already, 1 kept`, out)
			fi, err := os.Stat(dstDir)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
			personal := append(append([]string{}, legacy.Personal...), current.email, current.subject, gone.email, reason)
			if b.name == "sqlite" {
				requireAbsent(t, dbFilesIn(t, dstDir), personal, "the new SQLite files")
				require.Contains(t, string(dbFilesIn(t, srcDir)), legacy.Carer.Email, "the old log is left as it was")
			}

			dst := startServerIn(t, dstDir, storeFlag("--event-store", dstStore)...)
			require.Equal(t, src.secret, dst.secret, "the JWT secret is copied: the old tokens work")
			after := answers(t, dst, queries, eventlog.Start)
			for q := range queries {
				require.Equal(t, before[q], after[q], q)
			}
			require.Regexp(t, `(?m)^personal data in plain text: 0 of [1-9][0-9]* events$`, dst.status())

			// R10 on the new log: the name-based account and the renamed
			// identity stream are found.
			dw := newWorld(dst)
			dw.worker = on(dst, w.worker)
			r := on(dst, w.worker).do("POST", "/v1/invitations", map[string]string{"email": legacy.Carer.Email, "kind": string(domain.KindFosterCarer)})
			require.Equal(t, http.StatusConflict, r.status, "one email, one account: %s", r.String())
			other := dw.invite(string(domain.KindNetworkMember))
			r = on(dst, w.service).do("POST", "/v1/accounts/"+other.id+"/activation",
				map[string]string{"identity_subject": legacy.Carer.Subject, "email": other.email})
			require.Equal(t, http.StatusConflict, r.status, "one identity, one account: %s", r.String())

			dst.stop()
			code, vout := ledgerVerify(t, dst)
			require.Equal(t, exitOK, code, vout)
			if b.name == "sqlite" {
				// Served, the engine's accounts read model holds the live
				// accounts' emails, subjects and phone hints in plain text
				// (docs/personal-data.md); references and reasons stay
				// sealed.
				requireAbsent(t, dst.dbFiles(), append(legacy.Reasons, legacy.Reference, legacy.ErasableReference, reason),
					"the served SQLite files")
			}
		})
	}
}

// dbFilesIn returns the bytes of the SQLite files in data directory dir.
func dbFilesIn(t *testing.T, dir string) []byte {
	t.Helper()
	return (&e2eServer{t: t, dir: dir}).dbFiles()
}

// requireAbsent requires none of values in b (without printing b).
func requireAbsent(t *testing.T, b []byte, values []string, what string) {
	t.Helper()
	for _, v := range values {
		require.False(t, bytes.Contains(b, []byte(v)), "%s hold %q", what, v)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestReseal_RefusesADestinationHoldingAnotherLog: a destination whose
// log is not an interrupted reseal of the source is refused with a
// verdict, and nothing is appended to it.
func TestReseal_RefusesADestinationHoldingAnotherLog(t *testing.T) {
	t.Parallel()
	srcDir := privateDir(t)
	writeLegacy(t, srcDir, "")
	// Another deployment, with the source's master key (with another key
	// it is refused before anything is read: see internal/reseal).
	otherDir := privateDir(t)
	key, err := os.ReadFile(filepath.Join(srcDir, keystore.MasterKeyFileName))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(otherDir, keystore.MasterKeyFileName), key, 0o600))
	other := startServerIn(t, otherDir)
	newWorld(other).registerChild()
	other.stop()
	head := other.head()

	code, out, errOut := runCmd(t, context.Background(), noEnv, "reseal", "--data-dir", srcDir, "--to-data-dir", other.dir, "--log-level", "warn")
	require.Equal(t, exitError, code, out+errOut)
	require.Regexp(t, `(?m)^FAILED: copy: .*not an interrupted copy of this source`, out)
	require.Equal(t, head, other.head(), "nothing appended")

	code, _, errOut = runCmd(t, context.Background(), noEnv, "reseal", "--data-dir", srcDir, "--to-data-dir", srcDir)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "must not share")
	code, _, errOut = runCmd(t, context.Background(), noEnv, "reseal", "--data-dir", srcDir)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--to-data-dir is required")
	typo := filepath.Join(srcDir, "typo")
	code, _, errOut = runCmd(t, context.Background(), noEnv, "reseal", "--data-dir", typo, "--to-data-dir", filepath.Join(privateDir(t), "new"))
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "has no event store")
	require.NoDirExists(t, typo, "a mistyped source is not created")
}

// resealHelperEnv, when set, makes TestReseal_HelperProcess run accessd
// with the arguments it holds (separated by U+001F): the process the kill test
// kills.
const resealHelperEnv = "ACCESSLEDGER_TEST_RESEAL_HELPER"

func TestReseal_HelperProcess(t *testing.T) {
	args := os.Getenv(resealHelperEnv)
	if args == "" {
		t.Skip("the process TestReseal_ResumesAfterTheProcessWasKilled runs and kills")
	}
	os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr, noEnv))
}

var copiedRE = regexp.MustCompile(`(?m)^events copied: +(\d+) of (\d+) in \d+ writes \((\d+) found copied by an earlier run\)`)

// TestReseal_ResumesAfterTheProcessWasKilled: reseal is killed (SIGKILL)
// in the middle of its copy of a generated data set; run again, it finds
// what the first run copied, checks it, copies the rest and verifies:
// every event once.
func TestReseal_ResumesAfterTheProcessWasKilled(t *testing.T) {
	t.Parallel()
	for _, b := range resealBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srcDir, srcStore := privateDir(t), b.store(t)
			code, out, errOut := runCmd(t, context.Background(), noEnv,
				append([]string{"generate", "--scale", "small", "--data-dir", srcDir, "--log-level", "warn"}, storeFlag("--event-store", srcStore)...)...)
			require.Equal(t, exitOK, code, out+errOut)
			dstDir, dstStore := filepath.Join(privateDir(t), "new"), b.store(t)
			args := append([]string{"reseal", "--data-dir", srcDir, "--to-data-dir", dstDir, "--log-level", "warn"},
				append(storeFlag("--event-store", srcStore), storeFlag("--to-event-store", dstStore)...)...)

			cmd := exec.Command(os.Args[0], "-test.run=^TestReseal_HelperProcess$")
			cmd.Env = append(os.Environ(), resealHelperEnv+"="+strings.Join(args, "\x1f"))
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = io.Discard
			require.NoError(t, cmd.Start())
			var killed sync.Once
			kill := func() { killed.Do(func() { _ = cmd.Process.Signal(syscall.SIGKILL) }) }
			t.Cleanup(kill)
			lines := bufio.NewScanner(stdout)
			for lines.Scan() {
				if strings.HasPrefix(lines.Text(), "reseal copy: ") {
					kill() // the copy has written a tenth or more
					break
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
			_ = cmd.Wait()

			code, out, errOut = runCmd(t, context.Background(), noEnv, args...)
			require.Equal(t, exitOK, code, out+errOut)
			m := copiedRE.FindStringSubmatch(out)
			require.NotNil(t, m, out)
			require.NotEqual(t, "0", m[3], "the second run found the first one's events: %s", m[0])
			require.NotEqual(t, "0", m[1], "the first run was killed before it had copied everything: %s", m[0])

			st, err := engine.OpenStore(context.Background(), &engine.Config{DataDir: dstDir, EventStore: dstStore}, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			defer st.Close()
			recs, err := st.Log.ReadAll(context.Background(), eventlog.Start, 0)
			require.NoError(t, err)
			require.Equal(t, m[2], itoa(uint64(len(recs))))
			seen := map[uuid.UUID]bool{}
			for _, r := range recs {
				require.False(t, seen[r.ID], "event %s twice", r.ID)
				seen[r.ID] = true
			}
		})
	}
}
