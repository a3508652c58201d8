package accessctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/ledger"
)

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, content, 0o644))
	return p
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// signWith signs cp with k.
func signWith(t *testing.T, k *ledger.Key, cp ledger.Checkpoint) []byte {
	t.Helper()
	b, err := cp.Sign(k.Signer)
	require.NoError(t, err)
	return b
}

// otherKey is a key of the same name as k but another key pair: a
// forger's.
func otherKey(t *testing.T, k *ledger.Key) *ledger.Key {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, k.Origin())
	require.NoError(t, err)
	o, err := ledger.ParseSignerKey(skey)
	require.NoError(t, err)
	return o
}

// TestLedger_VerifyAndProve runs the ledger's verbs against a real server:
// the checkpoint kept today is extended by tomorrow's, and every event is
// proved to be in the signed log, with the checks made here.
func TestLedger_VerifyAndProve(t *testing.T) {
	s := newRealServer(t)
	recs := s.registerChildren(t, 4)
	dir := t.TempDir()
	aud := s.env(t, domain.RoleAuditor)

	res := runCLI(t, aud, "ledger", "public-key")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, s.key.VerifierKey+"\n", res.stdout)
	keyFile := writeFile(t, dir, "ledger.pub", []byte(res.stdout))
	res = runCLI(t, s.env(t, domain.RoleWorker), "ledger", "public-key", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.JSONEq(t, `{"public_key":`+jsonString(s.key.VerifierKey)+`,"name":`+jsonString(s.key.Origin())+`}`, res.stdout)

	res = runCLI(t, aud, "ledger", "checkpoint")
	require.Equal(t, exitOK, res.code, res.stderr)
	old, err := ledger.OpenCheckpoint([]byte(res.stdout), s.key.Verifier)
	require.NoError(t, err, "printed exactly as signed")
	require.EqualValues(t, len(recs), old.Size)
	oldFile := writeFile(t, dir, "old.cp", []byte(res.stdout))
	res = runCLI(t, s.env(t, domain.RoleService), "ledger", "checkpoint", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var cpJSON struct {
		Checkpoint, Origin, Root string
		Size                     int64
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &cpJSON))
	require.Equal(t, old.Size, cpJSON.Size)
	require.Equal(t, old.Root.String(), cpJSON.Root)
	require.Equal(t, s.key.Origin(), cpJSON.Origin)
	requireStableJSON(t, res.stdout)

	recs = s.registerChildren(t, 3)
	n := int64(len(recs))

	// Tomorrow: today's checkpoint extends the one kept.
	newFile := filepath.Join(dir, "new.cp")
	res = runCLI(t, aud, "ledger", "verify", "--checkpoint", oldFile, "--public-key", keyFile, "--save", newFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Empty(t, res.stderr)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	require.Len(t, lines, 6, res.stdout)
	require.Equal(t, "public key: "+s.key.Origin()+" (from "+keyFile+")", lines[0])
	require.Equal(t, fmt.Sprintf("checkpoint %s: %d events, root %s, signature OK", oldFile, old.Size, old.Root), lines[1])
	require.Regexp(t, fmt.Sprintf(`^server's checkpoint: %d events, root \S+, signature OK$`, n), lines[2])
	require.Regexp(t, fmt.Sprintf(`^consistency proof from %d to %d events: \d+ hashes, OK$`, old.Size, n), lines[3])
	require.Equal(t, "saved the server's checkpoint to "+newFile, lines[4])
	require.True(t, strings.HasPrefix(lines[5], fmt.Sprintf("OK: the server's log of %d events", n)), lines[5])
	fi, err := os.Stat(newFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	saved, err := os.ReadFile(newFile)
	require.NoError(t, err)
	cur, err := ledger.OpenCheckpoint(saved, s.key.Verifier)
	require.NoError(t, err)
	require.Equal(t, n, cur.Size)

	// --save never overwrites, and refuses before sending anything.
	res = runCLI(t, aud, "ledger", "verify", "--checkpoint", oldFile, "--public-key", keyFile, "--save", newFile)
	require.Equal(t, exitUsage, res.code)
	require.Contains(t, res.stderr, "--save: "+newFile+" exists: accessctl never overwrites a checkpoint")
	require.Empty(t, res.stdout)

	// The same checkpoint again: same size, same root.
	res = runCLI(t, aud, "ledger", "verify", "--checkpoint", newFile, "--public-key", keyFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "same size and root as the checkpoint in "+newFile+"\n")
	require.True(t, strings.HasPrefix(lastLine(res.stdout), "OK: "))

	res = runCLI(t, aud, "ledger", "verify", "--checkpoint", oldFile, "--public-key", keyFile, "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var vj struct {
		OK         bool     `json:"ok"`
		Verdict    string   `json:"verdict"`
		Checked    []string `json:"checked"`
		Checkpoint struct {
			Size int64 `json:"size"`
		} `json:"checkpoint"`
		Server struct {
			Size int64  `json:"size"`
			Root string `json:"root"`
		} `json:"server_checkpoint"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &vj))
	require.True(t, vj.OK)
	require.True(t, strings.HasPrefix(vj.Verdict, "OK: "))
	require.Len(t, vj.Checked, 4)
	require.Equal(t, old.Size, vj.Checkpoint.Size)
	require.Equal(t, n, vj.Server.Size)
	require.Equal(t, cur.Root.String(), vj.Server.Root)
	requireStableJSON(t, res.stdout)

	// Every event is in the signed log.
	for i, rec := range recs {
		res = runCLI(t, aud, "ledger", "prove", "--event", rec.ID.String(), "--public-key", keyFile)
		require.Equal(t, exitOK, res.code, res.stderr)
		require.Contains(t, res.stdout, fmt.Sprintf("event %s: %s in %s, version %d, position %s, recorded ", rec.ID, rec.Type, rec.Stream,
			rec.Version, rec.Position))
		require.Contains(t, res.stdout, "by worker-1 (worker)\n")
		require.Regexp(t, fmt.Sprintf(`leaf %d: hash \S+ recomputed from the event's bytes; inclusion proof of \d+ hashes, OK`, i), res.stdout)
		require.Equal(t, fmt.Sprintf("OK: event %s is leaf %d of the log of %d events (root %s) signed by %s", rec.ID, i, n, cur.Root,
			s.key.Origin()), lastLine(res.stdout))
	}
	require.Equal(t, domain.TypeChildRegistered, recs[0].Type)

	// Against the checkpoint kept earlier.
	res = runCLI(t, aud, "ledger", "prove", "--event", recs[1].ID.String(), "--public-key", keyFile, "--checkpoint", oldFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, fmt.Sprintf("checkpoint of %s: %d events", oldFile, old.Size))
	require.Contains(t, lastLine(res.stdout), fmt.Sprintf("of the log of %d events (root %s)", old.Size, old.Root))
	// An event newer than that checkpoint is not in it: the server says so.
	res = runCLI(t, aud, "ledger", "prove", "--event", recs[5].ID.String(), "--public-key", keyFile, "--checkpoint", oldFile)
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, fmt.Sprintf("tree_size %d does not include leaf 5", old.Size))
	// Without --public-key, the server's key, and a warning.
	res = runCLI(t, aud, "ledger", "prove", "--event", recs[2].ID.String(), "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var pj struct {
		OK      bool     `json:"ok"`
		Checked []string `json:"checked"`
		Event   struct {
			EventID   string `json:"event_id"`
			Type      string `json:"type"`
			Stream    string `json:"stream"`
			Version   int    `json:"version"`
			Position  string `json:"position"`
			LeafIndex int    `json:"leaf_index"`
		} `json:"event"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &pj))
	require.True(t, pj.OK)
	require.Contains(t, pj.Checked[0], "(from the server: compare it with a copy obtained elsewhere, or give --public-key)")
	require.Equal(t, recs[2].ID.String(), pj.Event.EventID)
	require.Equal(t, recs[2].Type, pj.Event.Type)
	require.Equal(t, recs[2].Stream, pj.Event.Stream)
	require.Equal(t, recs[2].Position.String(), pj.Event.Position)
	require.Equal(t, 2, pj.Event.LeafIndex)
	requireStableJSON(t, res.stdout)

	// Refusals of the server.
	res = runCLI(t, aud, "ledger", "prove", "--event", uuid.NewString(), "--public-key", keyFile)
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "(code not_found, status 404)")
	res = runCLI(t, s.env(t, domain.RoleService), "ledger", "prove", "--event", recs[0].ID.String(), "--public-key", keyFile)
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "(code forbidden, status 403)")
	res = runCLI(t, s.env(t, domain.RoleWorker), "ledger", "checkpoint")
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "(code forbidden, status 403)")
}

// TestLedger_Failures: checkpoints that are not the log's, or not signed by
// its key, fail the checks with a FAILED verdict and exit 1.
func TestLedger_Failures(t *testing.T) {
	s := newRealServer(t)
	recs := s.registerChildren(t, 5)
	n := int64(len(recs))
	ctx := context.Background()
	cur, err := s.ledger.Current(ctx)
	require.NoError(t, err)
	require.Equal(t, n, cur.Size)
	root2, err := s.ledger.Tree().Root(ctx, 2)
	require.NoError(t, err)
	forger := otherKey(t, s.key)
	// Another log's first two events.
	forkedRoot2 := tlog.NodeHash(tlog.RecordHash([]byte("forged 0")), tlog.RecordHash([]byte("forged 1")))
	otherRoot := cur.Root
	otherRoot[0] ^= 0xff

	dir := t.TempDir()
	keyFile := writeFile(t, dir, "ledger.pub", []byte(s.key.VerifierKey+"\n"))
	forgerKeyFile := writeFile(t, dir, "forger.pub", []byte(forger.VerifierKey+"\n"))
	cp := func(size int64, root tlog.Hash) ledger.Checkpoint {
		return ledger.Checkpoint{Origin: s.key.Origin(), Size: size, Root: root}
	}
	aud := s.env(t, domain.RoleAuditor)

	for _, tc := range []struct {
		name    string
		kept    []byte // the checkpoint file
		keyFile string
		failed  string // in the verdict
	}{
		{"kept checkpoint signed by another key", signWith(t, forger, cp(2, root2)), keyFile,
			"does not open with the key in " + keyFile},
		{"server's checkpoint signed by another key", signWith(t, forger, cp(2, root2)), forgerKeyFile,
			"the server's checkpoint does not open with the key in " + forgerKeyFile},
		{"kept checkpoint of a forked tree", signWith(t, s.key, cp(2, forkedRoot2)), keyFile,
			fmt.Sprintf("the server's log of %d events is not an extension of the checkpoint of 2 events", n)},
		{"a fork at the same size", signWith(t, s.key, cp(n, otherRoot)), keyFile, "the log was rewritten (a fork)"},
		{"the log is shorter than the kept checkpoint", signWith(t, s.key, cp(n+3, otherRoot)), keyFile,
			fmt.Sprintf("the server's log has %d events, fewer than the %d of the checkpoint", n, n+3)},
		{"not a checkpoint", []byte("hello\n"), keyFile, "does not open with the key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept := writeFile(t, t.TempDir(), "kept.cp", tc.kept)
			save := filepath.Join(t.TempDir(), "new.cp")
			res := runCLI(t, aud, "ledger", "verify", "--checkpoint", kept, "--public-key", tc.keyFile, "--save", save)
			require.Equal(t, exitError, res.code, res.stdout+res.stderr)
			verdict := lastLine(res.stdout)
			require.True(t, strings.HasPrefix(verdict, "FAILED: "), res.stdout)
			require.Contains(t, verdict, tc.failed)
			require.Equal(t, "accessctl: ledger check "+verdict+"\n", res.stderr)
			require.NoFileExists(t, save, "a checkpoint that fails is not saved")

			res = runCLI(t, aud, "ledger", "verify", "--checkpoint", kept, "--public-key", tc.keyFile, "--output", "json")
			require.Equal(t, exitError, res.code)
			var vj struct {
				OK      bool   `json:"ok"`
				Verdict string `json:"verdict"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.stdout), &vj))
			require.False(t, vj.OK)
			require.Equal(t, verdict, vj.Verdict)
		})
	}
	// The genuine checkpoint passes, for contrast.
	good := writeFile(t, dir, "good.cp", signWith(t, s.key, cp(2, root2)))
	require.Equal(t, exitOK, runCLI(t, aud, "ledger", "verify", "--checkpoint", good, "--public-key", keyFile).code)

	for _, tc := range []struct {
		name   string
		args   []string
		failed string
	}{
		{"a forked checkpoint", []string{"--checkpoint", writeFile(t, dir, "forked.cp", signWith(t, s.key, cp(n, otherRoot))),
			"--public-key", keyFile}, fmt.Sprintf("is not leaf 1 of the signed log of %d events", n)},
		{"a checkpoint signed by another key", []string{"--checkpoint", writeFile(t, dir, "forged.cp", signWith(t, forger, cp(n, cur.Root))),
			"--public-key", keyFile}, "does not open with the key"},
		{"the server's checkpoint with another key", []string{"--public-key", forgerKeyFile},
			"the checkpoint of the server does not open with the key"},
	} {
		t.Run("prove: "+tc.name, func(t *testing.T) {
			res := runCLI(t, aud, append([]string{"ledger", "prove", "--event", recs[1].ID.String()}, tc.args...)...)
			require.Equal(t, exitError, res.code, res.stdout+res.stderr)
			verdict := lastLine(res.stdout)
			require.True(t, strings.HasPrefix(verdict, "FAILED: "), res.stdout)
			require.Contains(t, verdict, tc.failed)
		})
	}
}

// TestLedger_LyingServer: a server that answers proofs of another log, or
// an event's bytes that are not the ones it signed, fails the checks made
// here. A proxy in front of the real server changes its answers.
func TestLedger_LyingServer(t *testing.T) {
	s := newRealServer(t)
	s.registerChildren(t, 6)
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "ledger.pub", []byte(s.key.VerifierKey+"\n"))
	aud := s.env(t, domain.RoleAuditor)
	res := runCLI(t, aud, "ledger", "checkpoint")
	require.Equal(t, exitOK, res.code, res.stderr)
	kept := writeFile(t, dir, "kept.cp", []byte(res.stdout))
	recs := s.registerChildren(t, 3)

	for _, tc := range []struct {
		name   string
		path   string // the answer changed
		change func(m map[string]any)
		args   []string
		failed string
	}{
		{"a consistency proof with a changed hash", "/v1/ledger/proof/consistency", func(m map[string]any) {
			hs := m["hashes"].([]any)
			hs[0] = flipHash(t, hs[0].(string))
		}, []string{"verify", "--checkpoint", kept}, "is not an extension of the checkpoint of 6 events"},
		{"a consistency proof of other sizes", "/v1/ledger/proof/consistency", func(m map[string]any) {
			m["from_size"] = 5
		}, []string{"verify", "--checkpoint", kept}, "the server answered a consistency proof from 5 to 9 events, not from 6 to 9"},
		{"an edited event, its hash recomputed", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			leaf := decodeLeafData(t, m["leaf_data"].(string))
			leaf.Reason = "edited later"
			m["leaf_data"] = leaf.Encode()
			h := leaf.Hash()
			m["leaf_hash"] = h.String()
		}, []string{"prove", "--event", recs[4].ID.String()}, "is not leaf 4 of the signed log of 9 events"},
		{"a leaf hash that is not its data's", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			m["leaf_hash"] = flipHash(t, m["leaf_hash"].(string))
		}, []string{"prove", "--event", recs[4].ID.String()}, "is not the hash of its leaf_data"},
		{"another event's leaf", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			leaf := decodeLeafData(t, m["leaf_data"].(string))
			leaf.EventID = recs[3].ID
			m["leaf_data"] = leaf.Encode()
		}, []string{"prove", "--event", recs[4].ID.String()}, "the server answered the leaf of event " + recs[3].ID.String()},
		{"bytes that are no leaf", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			m["leaf_data"] = []byte("nonsense")
		}, []string{"prove", "--event", recs[4].ID.String()}, "the server's leaf_data is not an event's leaf"},
		{"a proof with a changed hash", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			hs := m["hashes"].([]any)
			hs[len(hs)-1] = flipHash(t, hs[len(hs)-1].(string))
		}, []string{"prove", "--event", recs[4].ID.String()}, "is not leaf 4"},
		{"a proof for another tree size", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			m["tree_size"] = 6
		}, []string{"prove", "--event", recs[4].ID.String()}, "the server answered a proof for a tree of 6 events, not 9"},
		{"an unreadable hash", "/v1/ledger/proof/inclusion", func(m map[string]any) {
			m["hashes"] = []any{"not base64"}
		}, []string{"prove", "--event", recs[4].ID.String()}, "hash 1 is not a base64 SHA-256 hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liar := lyingProxy(t, s.url, tc.path, tc.change)
			env := map[string]string{envServer: liar, envToken: aud[envToken]}
			res := runCLI(t, env, append(append([]string{"ledger"}, tc.args...), "--public-key", keyFile)...)
			require.Equal(t, exitError, res.code, res.stdout+res.stderr)
			verdict := lastLine(res.stdout)
			require.True(t, strings.HasPrefix(verdict, "FAILED: "), res.stdout)
			require.Contains(t, verdict, tc.failed)
		})
	}
}

// lyingProxy forwards to target and rewrites the JSON answers of path with
// change.
func lyingProxy(t *testing.T, target, path string, change func(map[string]any)) string {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(res *http.Response) error {
		if res.Request.URL.Path != path || res.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		change(m)
		if body, err = json.Marshal(m); err != nil {
			return err
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

func flipHash(t *testing.T, s string) string {
	t.Helper()
	h, err := tlog.ParseHash(s)
	require.NoError(t, err)
	h[0] ^= 1
	return h.String()
}

func decodeLeafData(t *testing.T, b64 string) ledger.Leaf {
	t.Helper()
	var b []byte
	require.NoError(t, json.Unmarshal([]byte(jsonString(b64)), &b))
	l, err := ledger.DecodeLeaf(b)
	require.NoError(t, err)
	return l
}
