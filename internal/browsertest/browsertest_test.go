package browsertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/browsertest"
)

// recorder is a testing.TB that records Skip and Fatal instead of acting on
// them, so the harness's refusals can be tested.
type recorder struct {
	testing.TB
	skipped, fatal string
	cleanups       []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f with r in a goroutine of its own (Goexit ends it) and then
// runs the registered cleanups.
func (r *recorder) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// goodPage is small and accessible: a language, a title, landmarks, a
// heading, labelled fields, alt text, and text of ample contrast.
const goodPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access reviews</title>
<style>body { font: 16px/1.5 sans-serif; color: #1a1a1a; background: #fff; }</style></head>
<body>
<header><p>accessledger</p></header>
<main>
<h1>Access reviews</h1>
<img src="/logo.svg" alt="accessledger" width="40" height="40">
<form method="post" action="/search">
<label for="child">Child reference</label>
<input id="child" name="child" type="text" autocomplete="off">
<button type="submit">Search</button>
</form>
<p><a id="export" href="/export.csv">Export the reviews as CSV</a></p>
<p id="later" aria-live="polite"></p>
<script src="/later.js"></script>
</main>
</body>
</html>`

// badPage breaks three rules that axe-core rates serious or critical: an
// image with no text alternative, a field with no label, and grey text on
// white far below 4.5:1.
const badPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bad</title></head>
<body><main>
<h1>Bad page</h1>
<img src="/logo.svg">
<form><input type="text" name="q"></form>
<p id="faint" style="color: #d8d8d8; background: #ffffff">Barely legible text</p>
</main></body>
</html>`

const logo = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="#0b5394"/></svg>`

// site serves goodPage at /, badPage at /bad, a search answer, a CSV
// download and a script that writes text a while after the page loads.
// Every page forbids inline and foreign scripts, as the console will.
func site(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	html := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(body))
		}
	}
	mux.HandleFunc("GET /{$}", html(goodPage))
	mux.HandleFunc("GET /bad", html(badPage))
	mux.HandleFunc("GET /logo.svg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Write([]byte(logo))
	})
	mux.HandleFunc("GET /later.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write([]byte(`setTimeout(() => { document.getElementById("later").textContent = "Loaded later"; }, 300);`))
	})
	mux.HandleFunc("POST /search", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/results?child="+r.FormValue("child"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /results", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>Results</title></head><body><main>`+
			`<h1>Results</h1><p id="found">Reviews of %s: 2</p></main></body></html>`, strings.ReplaceAll(r.FormValue("child"), "<", "&lt;"))
	})
	mux.HandleFunc("GET /export.csv", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="reviews-2026.csv"`)
		w.Write([]byte("child,reviewer\nC-0001,auditor-1\n"))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAnAccessiblePageHasNoViolations(t *testing.T) {
	srv := site(t)
	ctx := browsertest.New(t)

	require.Equal(t, http.StatusOK, browsertest.Navigate(t, ctx, srv.URL))
	require.Equal(t, "Access reviews", browsertest.Text(t, ctx, "h1"))

	shot := browsertest.Screenshot(t, ctx, "home")
	b, err := os.ReadFile(shot)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")), "a PNG")
	require.Equal(t, t.ArtifactDir(), filepath.Dir(shot))
	require.Equal(t, "TestAnAccessiblePageHasNoViolations--home.png", filepath.Base(shot))

	require.Empty(t, browsertest.Axe(t, ctx))
	browsertest.RequireNoSeriousAxeViolations(t, ctx, "the good page")
}

func TestAnInaccessiblePageFailsTheCheck(t *testing.T) {
	srv := site(t)
	ctx := browsertest.New(t)
	require.Equal(t, http.StatusOK, browsertest.Navigate(t, ctx, srv.URL+"/bad"))

	got := map[string]browsertest.AxeViolation{}
	for _, v := range browsertest.Axe(t, ctx) {
		got[v.ID] = v
	}
	for id, wantTarget := range map[string]string{
		"image-alt":      "img",
		"label":          "input",
		"color-contrast": "#faint",
	} {
		v, ok := got[id]
		require.True(t, ok, "axe reports %s; it reported %v", id, got)
		require.True(t, v.Serious(), "%s is %s", id, v.Impact)
		require.NotEmpty(t, v.Help)
		require.Len(t, v.Nodes, 1)
		require.Equal(t, []string{wantTarget}, v.Nodes[0].Target)
	}

	r := &recorder{TB: t}
	r.run(func(tb testing.TB) { browsertest.RequireNoSeriousAxeViolations(tb, ctx, "the bad page") })
	require.Contains(t, r.fatal, "the bad page: 3 serious or critical accessibility violations")
	for _, want := range []string{
		"- image-alt (critical): Images must have alternative text",
		"- label (critical): Form elements must have labels",
		"- color-contrast (serious): Elements must meet minimum color contrast ratio thresholds",
		"at #faint",
		"https://dequeuniversity.com/rules/axe/",
	} {
		require.Contains(t, r.fatal, want)
	}
}

func TestFormsTextAndDownloads(t *testing.T) {
	srv := site(t)
	ctx := browsertest.New(t)
	browsertest.Navigate(t, ctx, srv.URL)

	// Text a script writes after the load.
	browsertest.WaitText(t, ctx, "#later", "Loaded later")

	// A form posted and redirected.
	browsertest.Type(t, ctx, "#child", "C-0042")
	require.Equal(t, http.StatusOK, browsertest.ClickNavigate(t, ctx, "button[type=submit]"))
	browsertest.WaitText(t, ctx, "#found", "Reviews of C-0042")
	require.Equal(t, "Reviews of C-0042: 2", browsertest.Text(t, ctx, "#found"))

	// A download, named as the server suggested.
	browsertest.Navigate(t, ctx, srv.URL)
	browsertest.WaitVisible(t, ctx, "#export")
	dl := browsertest.Download(t, ctx, chromedp.Click(chromedp.CSS("#export")))
	require.Equal(t, "reviews-2026.csv", dl.Name)
	require.Equal(t, srv.URL+"/export.csv", dl.URL)
	require.Equal(t, "child,reviewer\nC-0001,auditor-1\n", string(dl.Data))
	onDisk, err := os.ReadFile(dl.Path)
	require.NoError(t, err)
	require.Equal(t, dl.Data, onDisk)
	require.Equal(t, "reviews-2026.csv", filepath.Base(dl.Path))
}

func TestFailuresSayWhatHappened(t *testing.T) {
	srv := site(t)
	ctx := browsertest.New(t)
	browsertest.Navigate(t, ctx, srv.URL)

	r := &recorder{TB: t}
	r.run(func(tb testing.TB) {
		tctx, cancel := contextWithShortTimeout(ctx)
		defer cancel()
		browsertest.WaitText(tb, tctx, "h1", "Nothing like this")
	})
	require.Contains(t, r.fatal, `wait for h1 to contain "Nothing like this"`)
	require.Contains(t, r.fatal, `it holds "Access reviews"`)

	// Do bounds what it runs.
	r = &recorder{TB: t}
	r.run(func(tb testing.TB) {
		tctx, cancel := contextWithShortTimeout(ctx)
		defer cancel()
		browsertest.Do(tb, tctx, chromedp.WaitVisible(chromedp.CSS("#nothing")))
	})
	require.Contains(t, r.fatal, "deadline exceeded")
	browsertest.Do(t, ctx, chromedp.SetValue(chromedp.CSS("#child"), "C-0007"))
	value, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#child")))
	require.NoError(t, err)
	require.Equal(t, "C-0007", value)

	// The browser resolves no name but localhost: nothing leaves the machine.
	r = &recorder{TB: t}
	r.run(func(tb testing.TB) { browsertest.Navigate(tb, ctx, "http://accessledger.example/") })
	require.Contains(t, r.fatal, "net::ERR_NAME_NOT_RESOLVED")
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	require.Equal(t, http.StatusOK, browsertest.Navigate(t, ctx, "http://localhost"+port))
}

// contextWithShortTimeout bounds the helpers run on ctx to two seconds.
func contextWithShortTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Second)
}

func TestAChromiumThatCannotStartFails(t *testing.T) {
	for _, tt := range []struct {
		name, env, want string
	}{
		{"no such file", "/nonexistent/chromium", "names no executable"},
		{"not a browser", "/bin/false", "cannot start"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(browsertest.ChromiumEnv, tt.env)
			r := &recorder{TB: t}
			r.run(func(tb testing.TB) { browsertest.New(tb) })
			require.Empty(t, r.skipped)
			require.Contains(t, r.fatal, tt.want)
		})
	}
}

func TestAxeSourceMustBeReadableAndPinned(t *testing.T) {
	srv := site(t)
	ctx := browsertest.New(t)
	browsertest.Navigate(t, ctx, srv.URL)

	other := filepath.Join(t.TempDir(), "axe.min.js")
	require.NoError(t, os.WriteFile(other, []byte(`window.axe = {version: "3.0.0", run: async () => ({violations: []})};`), 0o644))
	for _, tt := range []struct {
		name, env, want string
	}{
		{"unreadable", filepath.Join(t.TempDir(), "missing.js"), browsertest.AxeEnv},
		{"another version", other, "axe-core 3.0.0 is loaded, the tests are pinned to " + browsertest.AxeVersion},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(browsertest.AxeEnv, tt.env)
			r := &recorder{TB: t}
			r.run(func(tb testing.TB) { browsertest.Axe(tb, ctx) })
			require.Empty(t, r.skipped)
			require.Contains(t, r.fatal, tt.want)
		})
	}
}

func TestTheAxeInstallIsPinned(t *testing.T) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join("axe", "package.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &pkg))
	require.Equal(t, browsertest.AxeVersion, pkg.Dependencies["axe-core"], "package.json pins an exact version")

	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	b, err = os.ReadFile(filepath.Join("axe", "package-lock.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &lock))
	locked := lock.Packages["node_modules/axe-core"]
	require.Equal(t, browsertest.AxeVersion, locked.Version)
	require.True(t, strings.HasPrefix(locked.Integrity, "sha512-"), "the lockfile holds the package's hash")
}
