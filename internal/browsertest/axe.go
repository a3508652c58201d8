package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// AxeEnv names the environment variable holding the path of axe-core's
// axe.min.js.
const AxeEnv = "ACCESSLEDGER_TEST_AXE"

// AxeVersion is the axe-core version the checks run with: the one pinned
// in internal/browsertest/axe/package.json (and its lockfile). An axe.min.js
// of another version fails the test.
const AxeVersion = "4.14.1"

// axeTags are the rule sets Axe runs: WCAG 2.0, 2.1 and 2.2 at levels A and
// AA (axe-core has no rule of its own for WCAG 2.2 level A).
var axeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"}

// axeInstall is where `make browser-deps` installs axe-core, relative to
// the module's root.
const axeInstall = "internal/browsertest/axe/node_modules/axe-core/axe.min.js"

// An AxeViolation is one axe-core rule that some elements of the page break.
type AxeViolation struct {
	ID          string    `json:"id"`     // the rule, e.g. "color-contrast"
	Impact      string    `json:"impact"` // "minor", "moderate", "serious" or "critical"
	Help        string    `json:"help"`   // what the rule asks, in one line
	HelpURL     string    `json:"helpUrl"`
	Description string    `json:"description"`
	Tags        []string  `json:"tags"`
	Nodes       []AxeNode `json:"nodes"`
}

// An AxeNode is one element that breaks a rule.
type AxeNode struct {
	Target  []string `json:"target"` // CSS selectors of the element (one per frame; shadow roots joined with " >>> ")
	HTML    string   `json:"html"`
	Summary string   `json:"summary"` // axe-core's failure summary: how to fix it
}

// Serious reports whether the violation's impact is "serious" or "critical".
func (v AxeViolation) Serious() bool { return v.Impact == "serious" || v.Impact == "critical" }

// axeRunJS runs axe-core on the document with axeTags and answers its
// violations in the shape of AxeViolation.
const axeRunJS = `(async (tags) => {
	const r = await axe.run(document, {
		runOnly: {type: "tag", values: tags},
		resultTypes: ["violations"],
	});
	const sel = (t) => Array.isArray(t) ? t.join(" >>> ") : String(t);
	return r.violations.map((v) => ({
		id: v.id, impact: v.impact || "", help: v.help, helpUrl: v.helpUrl,
		description: v.description, tags: v.tags,
		nodes: v.nodes.map((n) => ({target: n.target.map(sel), html: n.html, summary: n.failureSummary || ""})),
	}));
})(%s)`

// Axe injects axe-core into the tab's current page (once per page), runs
// the rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA (the tags wcag2a,
// wcag2aa, wcag21a, wcag21aa and wcag22aa) and returns the violations
// found, of every impact (nil for none).
// The test is skipped when no axe-core is installed and no AxeEnv is set,
// and fails when AxeEnv names no readable file or the file is not
// AxeVersion (see the package documentation).
func Axe(t testing.TB, ctx context.Context) []AxeViolation {
	t.Helper()
	src := axeSource(t)
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()

	// Runtime.evaluate is not subject to the page's Content-Security-Policy,
	// so a page that forbids inline and foreign scripts can still be checked.
	loaded, err := chromedp.Run(actx, chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	if err != nil {
		t.Fatalf("browsertest: axe: %v", err)
	}
	if !loaded {
		if err := chromedp.Do(actx, chromedp.Evaluate[chromedp.Void](src)); err != nil {
			t.Fatalf("browsertest: axe: inject axe-core: %v", err)
		}
	}
	version, err := chromedp.Run(actx, chromedp.Evaluate[string](`axe.version`))
	if err != nil {
		t.Fatalf("browsertest: axe: %v", err)
	}
	if version != AxeVersion {
		t.Fatalf("browsertest: axe-core %s is loaded, the tests are pinned to %s: run make browser-deps, or point %s at axe-core %s",
			version, AxeVersion, AxeEnv, AxeVersion)
	}

	tags, _ := json.Marshal(axeTags) // a []string always marshals
	violations, err := chromedp.Run(actx, chromedp.Evaluate[[]AxeViolation](fmt.Sprintf(axeRunJS, tags),
		func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
	if err != nil {
		t.Fatalf("browsertest: axe: run: %v", err)
	}
	return violations
}

// RequireNoSeriousAxeViolations runs Axe on the tab's current page and
// fails the test if any violation is "serious" or "critical", listing each
// (rule, impact, help, where to read more, and the selectors and failure
// summary of the elements). Minor and moderate violations are logged, not
// failed. page names the page in the messages ("the console's home").
func RequireNoSeriousAxeViolations(t testing.TB, ctx context.Context, page string) {
	t.Helper()
	var serious, other []AxeViolation
	for _, v := range Axe(t, ctx) {
		if v.Serious() {
			serious = append(serious, v)
		} else {
			other = append(other, v)
		}
	}
	if len(other) > 0 {
		t.Logf("browsertest: %s: %d minor or moderate accessibility violations (not failed):\n%s", page, len(other), FormatAxeViolations(other))
	}
	if len(serious) > 0 {
		t.Fatalf("browsertest: %s: %d serious or critical accessibility violations (axe-core %s, %s):\n%s",
			page, len(serious), AxeVersion, strings.Join(axeTags, " "), FormatAxeViolations(serious))
	}
}

// FormatAxeViolations lists violations for a person: one paragraph per
// rule with its impact, what it asks, where to read more, and one line per
// element (its selectors and how to fix it).
func FormatAxeViolations(violations []AxeViolation) string {
	var b strings.Builder
	for _, v := range violations {
		fmt.Fprintf(&b, "- %s (%s): %s\n    %s\n", v.ID, v.Impact, v.Help, v.HelpURL)
		for _, n := range v.Nodes {
			fmt.Fprintf(&b, "    at %s\n", strings.Join(n.Target, ", "))
			for line := range strings.SplitSeq(strings.TrimSpace(n.Summary), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					fmt.Fprintf(&b, "        %s\n", line)
				}
			}
		}
	}
	return b.String()
}

// axeSource returns the text of axe.min.js: the file AxeEnv names, else the
// module's install, else it skips the test.
func axeSource(t testing.TB) string {
	t.Helper()
	if p := strings.TrimSpace(os.Getenv(AxeEnv)); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("browsertest: %s: %v", AxeEnv, err)
		}
		return string(b)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("browsertest: find axe-core: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(root, axeInstall))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("accessibility checks need axe-core %s: run make browser-deps (npm ci in internal/browsertest/axe), or set %s to an axe.min.js",
			AxeVersion, AxeEnv)
	}
	if err != nil {
		t.Fatalf("browsertest: axe-core: %v", err)
	}
	return string(b)
}

// moduleRoot returns the nearest directory at or above the working
// directory (a test's package directory) that holds a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}
