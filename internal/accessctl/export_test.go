package accessctl

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestExport: accessctl export writes the subject access export (R21) of
// a child to a new private file, as JSON or as a zip of CSV files, never
// over an existing file; only auditors and the dpo may.
func TestExport(t *testing.T) {
	s := newRealServer(t)
	res := runCLI(t, s.env(t, domain.RoleWorker), "--output", "json", "register-child", "--reference", "NCC-EXPORT-1")
	require.Equal(t, exitOK, res.code, res.stderr)
	var reg struct {
		ChildID string `json:"child_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &reg))
	s.CaughtUp(t)
	dir := t.TempDir()
	auditor := s.env(t, domain.RoleAuditor)

	file := filepath.Join(dir, "c.json")
	res = runCLI(t, auditor, "export", "--child", reg.ChildID, "--out", file)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "1 events, 0 intervals")
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the file holds personal data")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	require.Equal(t, "child", doc["subject"])
	require.Equal(t, "NCC-EXPORT-1", doc["child"].(map[string]any)["reference"])

	// Never over an existing file: nothing is asked, the file is as it was.
	res = runCLI(t, auditor, "export", "--child", reg.ChildID, "--out", file, "--format", "csv")
	require.Equal(t, exitUsage, res.code)
	require.Contains(t, res.stderr, "exists")
	again, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, b, again)

	// As CSV, by the dpo, into the default file name.
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(dir))
	t.Cleanup(func() { _ = os.Chdir(wd) })
	res = runCLI(t, s.env(t, domain.RoleDPO), "export", "--child", reg.ChildID, "--format", "csv")
	require.Equal(t, exitOK, res.code, res.stderr)
	zb, err := os.ReadFile(filepath.Join(dir, "child-"+reg.ChildID+"-export.zip"))
	require.NoError(t, err)
	z, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range z.File {
		rc, err := f.Open()
		require.NoError(t, err)
		recs, err := csv.NewReader(rc).ReadAll()
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.NotEmpty(t, recs, "%s has a header row", f.Name)
		names[f.Name] = true
	}
	require.Equal(t, map[string]bool{"child.csv": true, "placements.csv": true, "grants.csv": true, "events.csv": true,
		"intervals.csv": true, "refused.csv": true, "views.csv": true, "alerts.csv": true}, names)

	// Who may, and what is wrong on the command line.
	res = runCLI(t, s.env(t, domain.RoleWorker), "export", "--child", reg.ChildID, "--out", filepath.Join(dir, "w.json"))
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "forbidden")
	require.NoFileExists(t, filepath.Join(dir, "w.json"))
	for _, args := range [][]string{
		{"export"},
		{"export", "--child", reg.ChildID, "--account", reg.ChildID},
		{"export", "--child", "nope"},
		{"export", "--child", reg.ChildID, "--format", "xml"},
	} {
		res = runCLI(t, auditor, args...)
		require.Equal(t, exitUsage, res.code, args)
	}
}

// TestChildByReference: a worker finds a child by its reference (R17),
// and registering the reference again is refused naming the child.
func TestChildByReference(t *testing.T) {
	s := newRealServer(t)
	worker := s.env(t, domain.RoleWorker)
	res := runCLI(t, worker, "--output", "json", "register-child", "--reference", "NCC-FIND-1")
	require.Equal(t, exitOK, res.code, res.stderr)
	var reg struct {
		ChildID string `json:"child_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &reg))
	s.CaughtUp(t)

	res = runCLI(t, worker, "child", "--reference", "ncc-find-1")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, reg.ChildID)
	require.Contains(t, res.stdout, "NCC-FIND-1")

	res = runCLI(t, worker, "register-child", "--reference", "NCC-FIND-1")
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "already_registered")
	require.Contains(t, res.stderr, reg.ChildID)

	res = runCLI(t, worker, "child", "--reference", "NCC-NOBODY")
	require.Equal(t, exitError, res.code)
	require.Contains(t, res.stderr, "no child has the reference")
	res = runCLI(t, worker, "child", "--reference", "NCC-FIND-1", "--child", reg.ChildID)
	require.Equal(t, exitUsage, res.code)
}
