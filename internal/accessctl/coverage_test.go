package accessctl

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// routesFile is the server's route table, read as source so that this
// test needs nothing exported from the adapter.
const routesFile = "../../adapters/httpapi/routes.go"

// withoutVerb are the routes accessctl leaves to other tools, and why.
var withoutVerb = map[string]string{
	"GET /healthz": "no token, for load balancers (curl it)",
	"GET /readyz":  "no token, for load balancers and deployments (curl it)",
	"GET /metrics": "no token, Prometheus' text format for its scraper",
}

// serverRoutes returns "METHOD PATTERN" of every entry of the route table
// in routes.go: each composite literal with a Method and a Pattern field.
func serverRoutes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), routesFile, nil, 0)
	require.NoError(t, err)
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var method, pattern string
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			switch {
			case key == nil:
			case key.Name == "Method":
				sel, ok := kv.Value.(*ast.SelectorExpr)
				require.True(t, ok, "a route's Method is http.MethodX")
				method = strings.ToUpper(strings.TrimPrefix(sel.Sel.Name, "Method"))
			case key.Name == "Pattern":
				b, ok := kv.Value.(*ast.BasicLit)
				require.True(t, ok, "a route's Pattern is a string literal")
				pattern, err = strconv.Unquote(b.Value)
				require.NoError(t, err)
			}
		}
		if method != "" && pattern != "" {
			out = append(out, method+" "+pattern)
		}
		return true
	})
	require.Greater(t, len(out), 30, "routes.go's table was not found: has its shape changed?")
	return out
}

// TestEveryRouteHasAVerb keeps accessctl complete: every route of the
// server's table is some verb's endpoint (or listed in withoutVerb, with
// the reason), and every endpoint a verb names is a route.
func TestEveryRouteHasAVerb(t *testing.T) {
	routes := serverRoutes(t)
	endpoints := map[string]string{} // endpoint -> verb
	for _, v := range verbs() {
		for _, e := range strings.Split(v.endpoint, ", ") {
			endpoints[e] = v.name
		}
	}
	isRoute := map[string]bool{}
	for _, r := range routes {
		isRoute[r] = true
		if _, ok := withoutVerb[r]; ok {
			continue
		}
		require.Contains(t, endpoints, r, "the server serves %s but no accessctl verb calls it: add one (verbs.go)", r)
	}
	for e, name := range endpoints {
		require.True(t, isRoute[e], "verb %s names endpoint %q, which routes.go does not serve", name, e)
	}
	for r := range withoutVerb {
		require.True(t, isRoute[r], "withoutVerb lists %s, which routes.go no longer serves", r)
	}
}

// TestNowDefaults: place and end-placement without a time send this
// machine's now, in UTC, to the microsecond; the help says so.
func TestNowDefaults(t *testing.T) {
	cases := []struct {
		args  []string
		field string
	}{
		{[]string{"place", "--child", childID, "--carer", carerID}, "started_at"},
		{[]string{"end-placement", "--child", childID, "--placement", placementID, "--reason", "moved"}, "ended_at"},
	}
	for _, tc := range cases {
		t.Run(tc.args[0], func(t *testing.T) {
			f := newFakeServer(t, testToken, fixed(reply{body: `{"placement_id":"` + placementID + `","grace_until":"2026-02-08T17:00:00Z","position":"15"}`}))
			before := time.Now().UTC().Truncate(time.Microsecond)
			res := runCLI(t, envFor(f), tc.args...)
			after := time.Now().UTC()
			require.Equal(t, exitOK, res.code, res.stderr)
			reqs := f.requests()
			require.Len(t, reqs, 1)
			sent, ok := reqs[0].Body[tc.field].(string)
			require.True(t, ok, "%s is sent", tc.field)
			require.True(t, strings.HasSuffix(sent, "Z"), "in UTC: %s", sent)
			at, err := time.Parse(time.RFC3339, sent)
			require.NoError(t, err)
			require.Equal(t, at.Truncate(time.Microsecond), at, "to the microsecond")
			require.False(t, at.Before(before) || at.After(after), "%s is now (%s to %s)", at, before, after)
			require.Contains(t, res.stdout, at.Format("2006-01-02 15:04:05 UTC"), "the table shows the time sent")

			help := runCLI(t, nil, tc.args[0], "-h")
			require.Contains(t, help.stdout, "defaults to now")
			require.Contains(t, help.stdout, "(default now)")
		})
	}
}
