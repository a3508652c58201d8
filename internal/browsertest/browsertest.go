// Package browsertest drives a headless Chromium from Go tests, through
// the Chrome DevTools Protocol (github.com/chromedp/chromedp), for the tests
// of the server-rendered pages (the auditor's console): open a page, click,
// type, wait for text, capture a download, take a screenshot, and check the
// page with axe-core (WCAG 2.0/2.1/2.2 A and AA).
//
// # Which browser
//
// The browser is the executable named by $ACCESSLEDGER_TEST_CHROMIUM. When
// the variable is set and that browser cannot be found or started, the test
// fails: it never skips, so a CI job that sets the variable cannot silently
// lose its browser tests. When the variable is unset, /usr/bin/chromium
// (Debian's chromium package) is used if present, and the test is skipped
// with a message saying how to install it if not.
//
// # Which axe-core
//
// axe-core is read from the file named by $ACCESSLEDGER_TEST_AXE (axe.min.js;
// set and unreadable fails the test), else from the module's own install in
// internal/browsertest/axe/node_modules (`make browser-deps`), else the test
// is skipped with a message saying how to install it. Its version must be
// AxeVersion, the one pinned in internal/browsertest/axe/package.json.
//
// # What the browser reaches
//
// Only servers on loopback addresses (127.0.0.0/8, ::1, localhost), which is
// where httptest starts them: the browser resolves no other name, and is
// started with every switch that stops it from calling its vendor's hosts.
//
// # Where screenshots go
//
// Screenshot writes under t.ArtifactDir(): a temporary directory removed
// after the test, unless go test runs with -artifacts, when it is kept
// under -outputdir (`make test` does this: ./test-artifacts/_artifacts/).
// Go 1.26 names that directory with a random number only, so the file
// names start with the test's name; the path is logged (go test -v also
// prints "=== ARTIFACTS"). A test that fails gets a screenshot named
// "failure" of the page it was on, and the browser's own log.
//
// Every helper takes the test and fails it (FailNow) on error, so a test reads
// as a list of steps. Each helper waits at most ActionTimeout; run other
// chromedp actions with Do, which bounds them the same way (run directly on
// the context of New, an action waits up to BrowserTimeout). The context
// returned by New is for one tab; like any chromedp context it must not be
// used by two goroutines at once (make another tab with chromedp.NewContext
// for that).
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/accessledger/accessledger/internal/syncbuf"
)

// ChromiumEnv names the environment variable holding the path (or the
// name, looked up in PATH) of the Chromium executable the tests drive.
const ChromiumEnv = "ACCESSLEDGER_TEST_CHROMIUM"

// DefaultChromium is the browser used when ChromiumEnv is unset: Debian's
// chromium package.
const DefaultChromium = "/usr/bin/chromium"

const (
	// BrowserTimeout bounds the life of the browser New starts: at most
	// this long after New, the browser is stopped and every action fails.
	BrowserTimeout = 3 * time.Minute
	// ActionTimeout bounds each helper of this package (a navigation, a
	// click, a wait for text, an axe run, a download).
	ActionTimeout = 20 * time.Second
)

// flags are the command-line switches Chromium is started with, on top of
// chromedp's defaults (headless, no first run, no background networking,
// no sync, no extensions, ...): no sandbox (the tests run as root in CI and
// load only their own pages), no GPU, and nothing that calls the browser
// vendor's hosts (QUIC probes, component updates, field trials), which a
// closed network refuses and which would make the tests slow or flaky.
// The host resolver rule is the backstop: the browser resolves no name but
// localhost (it still looked up two of the vendor's hosts at start without
// it), so a page can reach only servers on loopback addresses, which is
// where httptest starts them.
var flags = []chromedp.ExecAllocatorOption{
	chromedp.Headless,
	chromedp.NoSandbox,
	chromedp.DisableGPU,
	chromedp.NoFirstRun,
	chromedp.NoDefaultBrowserCheck,
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("disable-domain-reliability", true),
	chromedp.Flag("disable-field-trial-config", true),
	chromedp.Flag("no-pings", true),
	chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE ::1"),
	chromedp.Flag("lang", "en-GB"),
	chromedp.WindowSize(1280, 900),
}

// New starts a fresh headless Chromium for the test (its own user data
// directory under t.TempDir(), so no cookie or cache is shared with another
// test) and returns the context of its one tab, ready for chromedp actions
// and the helpers of this package. The browser is stopped when the test
// ends, at the latest BrowserTimeout after New. New skips the test when no
// browser is configured or installed and fails it when the configured one
// cannot start (see the package documentation).
func New(t testing.TB) context.Context {
	t.Helper()
	path := chromiumPath(t, DefaultChromium)
	dataDir := t.TempDir()

	var output, log syncbuf.Buffer
	opts := append(append([]chromedp.ExecAllocatorOption{}, chromedp.DefaultExecAllocatorOptions[:]...), flags...)
	opts = append(opts,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dataDir),
		chromedp.CombinedOutput(&output),
	)
	// Not t.Context(): it is cancelled before the cleanups run, and the
	// cleanup below still needs the browser for its failure screenshot.
	base, cancelBase := context.WithTimeout(context.WithoutCancel(t.Context()), BrowserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	logf := func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }
	ctx, cancelTab := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(logf), chromedp.WithErrorf(logf), chromedp.WithBrowserOption(chromedp.WithConsolef(logf)))

	// Registered after t.TempDir, so it runs before the data directory is
	// removed: the browser must be gone first.
	t.Cleanup(func() {
		if t.Failed() && ctx.Err() == nil {
			shotCtx, cancel := context.WithTimeout(ctx, ActionTimeout)
			if buf, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100)); err == nil {
				if p, err := writeArtifact(t, "failure", buf); err == nil {
					t.Logf("browsertest: the page at the failure: %s", p)
				}
			}
			cancel()
		}
		cancelTab()
		cancelAlloc()
		cancelBase()
		if t.Failed() {
			t.Logf("browsertest: the browser's log (D-Bus complaints left out):\n%s", tail(withoutDBus(log.String()+output.String()), 4000))
		}
	})

	// The first action starts the browser and binds its life to ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: Chromium %s cannot start: %v\n%s", path, err, tail(output.String(), 2000))
	}
	return ctx
}

// chromiumPath resolves the browser to start: $ACCESSLEDGER_TEST_CHROMIUM
// if set (fatal when it names no executable), else fallback if it exists,
// else the test is skipped.
func chromiumPath(t testing.TB, fallback string) string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv(ChromiumEnv)); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			t.Fatalf("browsertest: %s=%q names no executable: %v", ChromiumEnv, v, err)
			return ""
		}
		return p
	}
	if _, err := os.Stat(fallback); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("browsertest: %s: %v", fallback, err)
			return ""
		}
		t.Skipf("browser tests need Chromium: install it (apt-get install chromium) or set %s to its path", ChromiumEnv)
		return ""
	}
	return fallback
}

// withoutDBus drops the lines of Chromium's log about D-Bus, which a
// machine with no desktop session has not: they are many, and never the
// cause.
func withoutDBus(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.Contains(line, "dbus") && !strings.Contains(line, "DBus") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// tail returns the last n bytes of s, marked when cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
