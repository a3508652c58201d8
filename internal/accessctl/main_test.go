package accessctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	retryWait = time.Millisecond
	os.Exit(m.Run())
}

// testToken is the bearer token of the tests: distinctive, so that a test
// can tell that it is never printed.
const testToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3LTEifQ.SECRET-sig_123"

const (
	childID     = "0b6c2a8e-54f1-4b7e-9d0a-3c1e2f4a5b6c"
	accountID   = "7d1e9f20-3a4b-4c5d-8e6f-708192a3b4c5"
	carerID     = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	placementID = "2c3d4e5f-6a7b-4c8d-9e0f-a1b2c3d4e5f6"
	eventID1    = "e1000000-0000-4000-8000-000000000001"
	eventID2    = "e2000000-0000-4000-8000-000000000002"
)

// result is one run of accessctl.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs accessctl with args and env as the whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := run(context.Background(), args, &stdout, &stderr, lookup)
	return result{stdout.String(), stderr.String(), code}
}

// envFor is the environment of a run against f with the test token.
func envFor(f *fakeServer) map[string]string {
	return map[string]string{envServer: f.URL, envToken: testToken}
}

// TestProblems checks how refusals are printed: the server's problem on
// one line of stderr, nothing on stdout, exit 1.
func TestProblems(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		reply  reply
		stderr string
	}{
		{
			name:   "forbidden",
			args:   []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent", "--permissions", "view", "--reason", "r"},
			reply:  reply{status: 403, body: `{"type":"about:blank","title":"Forbidden","status":403,"detail":"you are not the child's allocated worker","code":"forbidden"}`},
			stderr: "accessctl: Forbidden: you are not the child's allocated worker (code forbidden, status 403)\n",
		},
		{
			name:   "already registered",
			args:   []string{"invite", "--email", "jo@example.org", "--kind", "parent"},
			reply:  reply{status: 409, body: `{"title":"Already registered","status":409,"detail":"already registered: sign in with your existing account","code":"already_registered"}`},
			stderr: "accessctl: Already registered: already registered: sign in with your existing account (code already_registered, status 409)\n",
		},
		{
			name:   "not found, query",
			args:   []string{"account", "--account", accountID},
			reply:  reply{status: 404, body: `{"title":"Not found","status":404,"detail":"no account ` + accountID + `","code":"not_found"}`},
			stderr: "accessctl: Not found: no account " + accountID + " (code not_found, status 404)\n",
		},
		{
			name:   "stale",
			args:   []string{"viewers", "--child", childID, "--min-position", "999"},
			reply:  reply{status: 503, body: `{"title":"Not caught up","status":503,"detail":"position 999 not reached in time","code":"stale"}`},
			stderr: "accessctl: Not caught up: position 999 not reached in time (code stale, status 503)\n",
		},
		{
			name:  "internal, command: the key to retry with",
			args:  []string{"revoke", "--child", childID, "--account", accountID, "--reason", "r", "--idempotency-key", "k-1"},
			reply: reply{status: 500, body: `{"title":"Internal error","status":500,"code":"internal"}`},
			stderr: "accessctl: Internal error (code internal, status 500)\n" +
				"accessctl: the command may or may not have been carried out; to retry it safely, run it again with --idempotency-key k-1\n",
		},
		{
			name:   "not a problem document",
			args:   []string{"policy"},
			reply:  reply{status: 404, contentType: "text/plain; charset=utf-8", body: "404 page not found\n"},
			stderr: "accessctl: Not Found: 404 page not found (status 404)\n",
		},
		{
			name:   "an HTML page",
			args:   []string{"policy"},
			reply:  reply{status: 403, contentType: "text/html", body: "<html><body>denied</body></html>"},
			stderr: "accessctl: Forbidden (status 403)\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, testToken, fixed(tc.reply))
			res := runCLI(t, envFor(f), tc.args...)
			require.Equal(t, exitError, res.code)
			require.Empty(t, res.stdout)
			require.Equal(t, tc.stderr, res.stderr)
		})
	}
}

// TestFakeServerRefusals: the fake's own problem answers (a wrong token)
// come back through the same path.
func TestWrongToken(t *testing.T) {
	f := newFakeServer(t, "another-token", nil)
	res := runCLI(t, envFor(f), "policy")
	require.Equal(t, exitError, res.code)
	require.Equal(t, "accessctl: Unauthenticated: a valid bearer token is required (code unauthenticated, status 401)\n", res.stderr)
	require.NotContains(t, res.stdout+res.stderr, testToken)
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string // added to the fake's environment
		want string            // in stderr
	}{
		{"no verb", nil, nil, "Usage: accessctl VERB"},
		{"unknown verb", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"unknown flag", []string{"policy", "--frob"}, nil, "flag provided but not defined: -frob"},
		{"positional argument", []string{"account", "--account", accountID, "extra"}, nil, `unexpected argument "extra"`},
		{"missing flags", []string{"place"}, nil, "accessctl place: --child is required\n  --carer is required\nRun"},
		{"blank optional reason", []string{"end-placement", "--child", childID, "--placement", placementID, "--reason", " "}, nil,
			"--reason is blank: leave it out, or say why"},
		{"activate without subject", []string{"activate", "--account", accountID, "--email", "jo@example.org"}, nil, "--identity-subject is required"},
		{"activate bad email", []string{"activate", "--account", accountID, "--identity-subject", "s", "--email", "jo"}, nil,
			`--email "jo" is not an email address`},
		{"enrol-phone without phone", []string{"enrol-phone", "--account", accountID}, nil, "--phone is required"},
		{"enrol-phone too short", []string{"enrol-phone", "--account", accountID, "--phone", "12345"}, nil, "--phone: must have 7 to 15 digits"},
		{"enrol-phone letters", []string{"enrol-phone", "--account", accountID, "--phone", "0770 CALL ME"}, nil, "--phone: only digits"},
		{"accounts email and subject", []string{"accounts", "--email", "jo@example.org", "--identity-subject", "s"}, nil,
			"give --email or --identity-subject, not both"},
		{"accounts email with a filter", []string{"accounts", "--email", "jo@example.org", "--status", "active"}, nil,
			"--email and --identity-subject find one account: they take no other filter"},
		{"accounts bad status", []string{"accounts", "--status", "open"}, nil, `--status "open": want one of invited, active, expired, closed`},
		{"accounts bad bool", []string{"accounts", "--needs-phone-enrolment", "yes"}, nil, `--needs-phone-enrolment "yes": want true or false`},
		{"accounts bad after", []string{"accounts", "--after", "7"}, nil, `--after "7" is not an id`},
		{"history needs child or account", []string{"history"}, nil, "--child or --account is required"},
		{"history not both", []string{"history", "--child", childID, "--account", accountID}, nil, "give --child or --account, not both"},
		{"watch with min-position", []string{"watch", "--min-position", "3"}, nil, "--min-position does not apply to watch"},
		{"watch negative count", []string{"watch", "--count", "-1"}, nil, "--count -1: must be positive"},
		{"watch bad after", []string{"watch", "--after", "4 2"}, nil, `--after "4 2"`},
		{"bad uuid", []string{"allocate", "--child", "child-1", "--worker", "w"}, nil, `--child "child-1" is not an id: want a UUID`},
		{"nil uuid", []string{"account", "--account", uuid.Nil.String()}, nil, "is not an id"},
		{"bad time", []string{"end-placement", "--child", childID, "--placement", placementID, "--ended-at", "2026-02-01", "--reason", "r"}, nil,
			`--ended-at "2026-02-01" is not an RFC 3339 time`},
		{"blank reason", []string{"revoke", "--child", childID, "--account", accountID, "--reason", "  "}, nil, "--reason is required"},
		{"bad kind", []string{"invite", "--email", "a@b.c", "--kind", "friend"}, nil, `--kind "friend": want one of foster_carer, parent, guardian, network_member`},
		{"bad email", []string{"invite", "--email", "nobody", "--kind", "parent"}, nil, `--email "nobody" is not an email address`},
		{"bad relationship", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "carer", "--permissions", "view", "--reason", "r"}, nil,
			`--relationship "carer": want one of parent, guardian, network_member`},
		{"grant permission not grantable", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent",
			"--permissions", "view,complete_outstanding", "--reason", "r"}, nil, `--permissions: "complete_outstanding" is not one of view, record`},
		{"grant permission twice", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent",
			"--permissions", "view,view", "--reason", "r"}, nil, `--permissions: "view" is listed twice`},
		{"check needs child or carer", []string{"check", "--account", accountID, "--permission", "view"}, nil, "--child or --carer is required"},
		{"check not both", []string{"check", "--account", accountID, "--child", childID, "--carer", carerID, "--permission", "view"}, nil,
			"give --child or --carer, not both"},
		{"check bad permission", []string{"check", "--account", accountID, "--child", childID, "--permission", "edit"}, nil,
			`--permission "edit": want one of view, record, complete_outstanding`},
		{"audit to before from", []string{"audit", "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, nil, "is before --from"},
		{"audit negative limit", []string{"audit", "--limit", "-1"}, nil, "--limit -1: must be positive"},
		{"bad anchor", []string{"verify", "--anchor", "12:ABC"}, nil, `--anchor "12:ABC": want SEQ:HASH`},
		{"anchor without seq", []string{"verify", "--anchor", strings.Repeat("a", 64)}, nil, "want SEQ:HASH"},
		{"bad as-of", []string{"history", "--child", childID, "--as-of", "1 2"}, nil, `--as-of "1 2"`},
		{"security-log to not after from", []string{"security-log", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, nil,
			"is not after --from"},
		{"bad output", []string{"policy", "--output", "yaml"}, nil, `--output "yaml": want table or json`},
		{"bad output env", []string{"policy"}, map[string]string{envOutput: "xml"}, `--output "xml": want table or json`},
		{"bad timeout env", []string{"policy"}, map[string]string{envTimeout: "soon"}, `ACCESSLEDGER_TIMEOUT="soon" is not a duration`},
		{"negative timeout", []string{"policy", "--timeout", "-1s"}, nil, "--timeout -1s: must not be negative"},
		{"bad server", []string{"policy", "--server", "127.0.0.1:8080"}, nil, "is not an http:// or https:// URL"},
		{"server with query", []string{"policy", "--server", "http://h/?x=1"}, nil, "must not have a query"},
		{"idempotency key on a query", []string{"policy", "--idempotency-key", "k"}, nil, "--idempotency-key applies to commands only"},
		{"min-position on a command", []string{"clear-phone", "--account", accountID, "--min-position", "3"}, nil, "--min-position applies to queries only"},
		{"bad idempotency key", []string{"clear-phone", "--account", accountID, "--idempotency-key", "a b"}, nil, "--idempotency-key: only visible ASCII"},
		{"bad min-position", []string{"policy", "--min-position", "1 2"}, nil, `--min-position "1 2"`},
		{"no token", []string{"policy"}, map[string]string{envToken: ""}, "no token: use --token-file FILE"},
		{"token and token file", []string{"policy", "--token", "t", "--token-file", "/nonexistent"}, nil, "give --token or --token-file, not both"},
		{"missing token file", []string{"policy", "--token-file", "/nonexistent/token"}, nil, "cannot read the token file"},
		{"both token env vars", []string{"policy"}, map[string]string{envTokenFile: "/x"}, "set ACCESSLEDGER_TOKEN or ACCESSLEDGER_TOKEN_FILE, not both"},
		{"ledger alone", []string{"ledger"}, nil, "Usage: accessctl ledger SUBCOMMAND"},
		{"ledger with a flag first", []string{"ledger", "--checkpoint", "x"}, nil, "Usage: accessctl ledger SUBCOMMAND"},
		{"unknown ledger verb", []string{"ledger", "audit"}, nil, `unknown command "ledger audit"`},
		{"ledger verify without files", []string{"ledger", "verify"}, nil, "--checkpoint FILE is required\n  --public-key FILE is required"},
		{"ledger verify, missing key file", []string{"ledger", "verify", "--checkpoint", "/nonexistent/cp", "--public-key", "/nonexistent/key"}, nil,
			"--public-key: open /nonexistent/key: no such file or directory"},
		{"ledger verify, not a key", []string{"ledger", "verify", "--checkpoint", "/nonexistent/cp", "--public-key", "main_test.go"}, nil,
			"--public-key: main_test.go does not hold a verifier key"},
		{"ledger prove without event", []string{"ledger", "prove"}, nil, "--event is required"},
		{"ledger prove, bad event", []string{"ledger", "prove", "--event", "e-1"}, nil, `--event "e-1" is not an id`},
		{"ledger prove, missing checkpoint file", []string{"ledger", "prove", "--event", eventID1, "--checkpoint", "/nonexistent/cp"}, nil,
			"--checkpoint: open /nonexistent/cp"},
		{"min-position on a ledger verb", []string{"ledger", "checkpoint", "--min-position", "3"}, nil,
			"--min-position does not apply to ledger checkpoint"},
		{"ledger verb with an argument", []string{"ledger", "public-key", "extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, testToken, nil)
			env := envFor(f)
			for k, v := range tc.env {
				env[k] = v
			}
			res := runCLI(t, env, tc.args...)
			require.Equal(t, exitUsage, res.code, "stderr: %s", res.stderr)
			require.Contains(t, res.stderr, tc.want)
			require.Empty(t, res.stdout)
			require.Empty(t, f.requests(), "nothing is sent after a usage error")
			require.Empty(t, f.refusals())
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		res := runCLI(t, nil, args...)
		require.Equal(t, exitOK, res.code)
		require.Contains(t, res.stdout, "Exit codes:")
		require.Contains(t, res.stdout, "Idempotency:")
		for _, v := range verbs() {
			require.Contains(t, res.stdout, "  "+v.name+" ")
		}
	}
	for _, v := range verbs() {
		words := strings.Fields(v.name) // "ledger verify" is two arguments
		for _, args := range [][]string{append(words, "-h"), append([]string{"help"}, words...)} {
			res := runCLI(t, nil, args...)
			require.Equal(t, exitOK, res.code)
			require.True(t, strings.HasPrefix(res.stdout, "Usage: accessctl "+v.name), res.stdout)
			require.Contains(t, res.stdout, v.endpoint)
		}
	}
	// The ledger's verbs are listed apart, and under "ledger".
	res := runCLI(t, nil, "help")
	require.Contains(t, res.stdout, ledgerTitle+"\n  ledger checkpoint ")
	for _, args := range [][]string{{"help", "ledger"}, {"ledger", "-h"}} {
		res := runCLI(t, nil, args...)
		require.Equal(t, exitOK, res.code)
		require.True(t, strings.HasPrefix(res.stdout, "Usage: accessctl ledger SUBCOMMAND"), res.stdout)
		for _, sub := range []string{"checkpoint", "public-key", "verify", "prove"} {
			require.Contains(t, res.stdout, "  ledger "+sub+" ")
		}
	}
	res = runCLI(t, nil, "ledger", "verify", "-h")
	require.Contains(t, res.stdout, "a query of the ledger; takes no --min-position")
	require.Contains(t, res.stdout, "--checkpoint FILE")
	res = runCLI(t, nil, "check", "-h")
	require.Contains(t, res.stdout, "Exits 0 when allowed and 3 when denied")
	require.Contains(t, res.stdout, "--permission PERMISSION")
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("  \n"+testToken+"-file\r\n\t"), 0o600))
	otherFile := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(otherFile, []byte(testToken+"-envfile\n"), 0o600))

	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantToken string
		wantFlag  bool // the request goes to the server named by --server, not by the environment
		wantJSON  bool
	}{
		{name: "environment only", env: map[string]string{envToken: testToken}, wantToken: testToken},
		{name: "--token beats the environment", env: map[string]string{envToken: "env-token"}, args: []string{"--token", testToken + "-flag"},
			wantToken: testToken + "-flag"},
		{name: "--token-file beats ACCESSLEDGER_TOKEN, trimmed", env: map[string]string{envToken: "env-token"}, args: []string{"--token-file", tokenFile},
			wantToken: testToken + "-file"},
		{name: "ACCESSLEDGER_TOKEN_FILE", env: map[string]string{envTokenFile: otherFile}, wantToken: testToken + "-envfile"},
		{name: "--token-file beats ACCESSLEDGER_TOKEN_FILE", env: map[string]string{envTokenFile: otherFile}, args: []string{"--token-file", tokenFile},
			wantToken: testToken + "-file"},
		{name: "--server beats ACCESSLEDGER_SERVER", env: map[string]string{envToken: testToken}, wantToken: testToken, wantFlag: true},
		{name: "global flags before the verb", env: map[string]string{envToken: "x"}, args: []string{"--token", testToken + "-flag"},
			wantToken: testToken + "-flag", wantFlag: true},
		{name: "ACCESSLEDGER_OUTPUT", env: map[string]string{envToken: testToken, envOutput: "json"}, wantToken: testToken, wantJSON: true},
		{name: "--output beats ACCESSLEDGER_OUTPUT", env: map[string]string{envToken: testToken, envOutput: "json"}, args: []string{"--output", "table"},
			wantToken: testToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := fixed(reply{body: `{"position":"5","account_id":"` + accountID + `","kind":"parent","status":"invited","needs_phone_enrolment":false,"phone_hint":"**7"}`})
			envSrv := newFakeServer(t, tc.wantToken, answer)
			flagSrv := newFakeServer(t, tc.wantToken, answer)
			env := map[string]string{envServer: envSrv.URL}
			for k, v := range tc.env {
				env[k] = v
			}
			args := []string{"account", "--account", accountID}
			if tc.wantFlag {
				args = append(args, "--server", flagSrv.URL)
			}
			if tc.name == "global flags before the verb" {
				args = append(append([]string{"--server", flagSrv.URL}, tc.args...), "account", "--account", accountID)
			} else {
				args = append(args, tc.args...)
			}
			res := runCLI(t, env, args...)
			require.Equal(t, exitOK, res.code, res.stderr)
			target, other := envSrv, flagSrv
			if tc.wantFlag {
				target, other = flagSrv, envSrv
			}
			require.Len(t, target.requests(), 1)
			require.Empty(t, other.requests())
			require.Empty(t, target.refusals(), "the token sent was not %q", tc.wantToken)
			if tc.wantJSON {
				require.True(t, strings.HasPrefix(res.stdout, "{\n"), res.stdout)
			} else {
				require.True(t, strings.HasPrefix(res.stdout, "account_id "), res.stdout)
			}
			require.NotContains(t, res.stdout+res.stderr, testToken)
		})
	}
}

// TestTokenNeverPrinted runs accessctl every way that prints something,
// with a token that would be recognisable, and looks for it.
func TestTokenNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(badFile, []byte("Bearer "+testToken), 0o600))

	f := newFakeServer(t, testToken, fixed(reply{status: 403, body: `{"title":"Forbidden","status":403,"detail":"no","code":"forbidden"}`}))
	runs := [][]string{
		{"policy"},
		{"policy", "-h"},
		{"help"},
		{"policy", "--token", testToken + " with a space"},
		{"policy", "--token", testToken + "\x00"},
		{"policy", "--token-file", badFile},
		{"policy", "--server", "http://user:" + testToken + "@127.0.0.1:1/"},
		{"policy", "--server", "http://user:" + testToken + "@[::1"},
		{"check", "--account", accountID, "--child", childID, "--permission", "view", "--token", testToken, "--frob"},
	}
	for _, c := range verbCases() {
		runs = append(runs, c.args)
	}
	for _, args := range runs {
		res := runCLI(t, envFor(f), args...)
		require.NotContains(t, res.stdout+res.stderr, testToken, "%v", args)
		require.NotContains(t, res.stdout+res.stderr, "SECRET", "%v", args)
	}
}
