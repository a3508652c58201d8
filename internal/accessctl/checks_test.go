package accessctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestChecksFile: checks reads a JSON array or JSON lines from a file; a
// bad check is a usage error naming its line (or position in the array),
// and nothing is sent.
func TestChecksFile(t *testing.T) {
	one := `{"account_id":"` + accountID + `","child_id":"` + childID + `","permission":"view"}`
	answer := `{"results":[{"allowed":true,"permissions":["view"],"reason":"grant","until":null},` +
		`{"allowed":true,"permissions":["view"],"reason":"grant","until":null}],"position":"5","at":"2026-02-28T23:00:00Z"}`
	write := func(content string) string {
		p := filepath.Join(t.TempDir(), "checks")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	for _, tc := range []struct {
		name, content, stderr string
		code                  int
	}{
		{"a JSON array", "  [" + one + ",\n" + one + "]\n", "", exitOK},
		{"JSON lines", one + "\n" + one, "", exitOK},
		{"a bad line", one + "\n\n" + `{"account_id":"` + accountID + `","child_id":"x","permission":"edit"}`,
			`line 3: child_id "x" is not an id`, exitUsage},
		{"both", `[` + one + `,{"account_id":"` + accountID + `","child_id":"` + childID + `","carer_id":"` + carerID + `","permission":"view"}]`,
			"check 2: give child_id or carer_id, not both", exitUsage},
		{"neither", `{"account_id":"` + accountID + `","permission":"view"}`, "line 1: child_id or carer_id is required", exitUsage},
		{"an unknown permission", `[{"account_id":"` + accountID + `","child_id":"` + childID + `","permission":"edit"}]`,
			`check 1: permission "edit": want one of view, record, complete_outstanding`, exitUsage},
		{"an unknown field", one + "\n" + `{"account":"` + accountID + `"}`, `line 2 is not one JSON object of a check: json: unknown field "account"`, exitUsage},
		{"two objects on a line", one + one, "line 1 is not one JSON object of a check", exitUsage},
		{"empty", "\n\n", "0 checks; give 1 to 1000", exitUsage},
		{"1,001", strings.Repeat(one+"\n", 1001), "1001 checks; give 1 to 1000", exitUsage},
		{"not an array", "[" + one, "not a JSON array of checks", exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, testToken, fixed(reply{body: answer}))
			res := runCLI(t, envFor(f), "checks", "--file", write(tc.content))
			require.Equal(t, tc.code, res.code, res.stderr)
			require.Contains(t, res.stderr, tc.stderr)
			if tc.code != exitOK {
				require.Empty(t, f.requests(), "nothing is sent")
				return
			}
			require.Empty(t, f.refusals())
			require.Len(t, f.requests(), 1)
			require.Len(t, f.requests()[0].Body["checks"], 2)
			require.Contains(t, res.stdout, "position: 5")
		})
	}
	f := newFakeServer(t, testToken, fixed(reply{body: answer}))
	res := runCLI(t, envFor(f), "checks")
	require.Equal(t, exitUsage, res.code)
	require.Contains(t, res.stderr, "--file is required")
	res = runCLI(t, envFor(f), "checks", "--file", filepath.Join(t.TempDir(), "missing"))
	require.Equal(t, exitUsage, res.code)
	require.Contains(t, res.stderr, "no such file")
}
