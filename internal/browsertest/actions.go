package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// Selectors in this file are CSS selectors; a helper that reads or acts on
// one element uses the first that matches.

// Do runs chromedp actions on the tab, in order, within ActionTimeout,
// and fails the test at the first error: for what no helper here does.
// (A chromedp action run directly on the context of New waits up to
// BrowserTimeout; some, like NavigateBack to a page restored from the
// back-forward cache, never see the load they wait for.)
func Do(t testing.TB, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
}

// Navigate opens url in the tab, waits until the page has loaded, and
// returns the HTTP status of the document (after redirects). A page that
// does not load (refused connection, DNS, ...) fails the test; an HTTP error
// status does not: compare the answer.
func Navigate(t testing.TB, ctx context.Context, url string) int {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	resp, err := chromedp.Run(actx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("browsertest: navigate to %s: %v", url, err)
	}
	return int(resp.Status)
}

// Click waits until the element sel is visible and clicks it. It does not
// wait for what the click causes: follow it with WaitText, or use
// ClickNavigate when the click loads a page.
func Click(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(actx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		t.Fatalf("browsertest: click %s: %v", sel, err)
	}
}

// ClickNavigate clicks the element sel (a link, a form's submit button),
// waits until the page it leads to has loaded, following redirects, and
// returns the HTTP status of that page. A click that loads no page fails
// the test after ActionTimeout.
func ClickNavigate(t testing.TB, ctx context.Context, sel string) int {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(actx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("browsertest: click %s and wait for the next page: %v", sel, err)
	}
	return int(resp.Status)
}

// Type focuses the element sel and types text into it key by key, as a
// person would (the field's input and change handlers run). It appends to
// what the field holds.
func Type(t testing.TB, ctx context.Context, sel, text string) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(actx, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)); err != nil {
		t.Fatalf("browsertest: type into %s: %v", sel, err)
	}
}

// Text waits until the element sel is present and returns its rendered
// text (innerText: what a person sees, with CSS-hidden parts left out),
// trimmed of surrounding space.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	text, err := chromedp.Run(actx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady))
	if err != nil {
		t.Fatalf("browsertest: read the text of %s: %v", sel, err)
	}
	return strings.TrimSpace(text)
}

// WaitVisible waits until the element sel is present and visible.
func WaitVisible(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(actx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		t.Fatalf("browsertest: wait for %s to be visible: %v", sel, err)
	}
}

// waitTextJS is true once the first element matching the selector
// (args[0]) has a rendered text containing args[1].
const waitTextJS = `(sel, want) => {
	const el = document.querySelector(sel);
	return el !== null && el.innerText.includes(want);
}`

// WaitText waits until the rendered text of the element sel contains text
// (across page loads: it keeps polling the tab's current page). On time-out
// the failure says what the element held, if anything.
func WaitText(t testing.TB, ctx context.Context, sel, text string) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	_, err := chromedp.Run(actx, chromedp.PollFunction[bool](waitTextJS,
		chromedp.WithPollingArgs(sel, text), chromedp.WithPollingTimeout(0)))
	if err == nil {
		return
	}
	// ctx may be the one that ran out.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), ActionTimeout/4)
	defer rcancel()
	got, rerr := chromedp.Run(rctx, chromedp.Evaluate[string](
		`(() => { const el = document.querySelector(`+jsString(sel)+`); return el === null ? "(no such element)" : el.innerText; })()`))
	if rerr != nil {
		got = "(unreadable: " + rerr.Error() + ")"
	}
	t.Fatalf("browsertest: wait for %s to contain %q: %v; it holds %q", sel, text, err, got)
}

// jsString quotes s as a JavaScript string literal (JSON's escapes,
// which include U+2028 and U+2029, are valid JavaScript).
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// Downloaded is a file the browser downloaded.
type Downloaded struct {
	Path string // where it was saved: a fresh directory under t.TempDir(), under Name
	Name string // the name the server suggested (Content-Disposition) or the URL's last segment
	URL  string // where it was downloaded from
	Data []byte // its content
}

// Download runs trigger (typically chromedp.Click(chromedp.CSS("a.export")))
// and waits until the download it starts is complete. Downloads of the tab
// are allowed from then on, into a fresh directory under t.TempDir(). A
// trigger that starts no download, or a download that is cancelled or
// fails, fails the test.
func Download(t testing.TB, ctx context.Context, trigger chromedp.Action[chromedp.Void]) Downloaded {
	t.Helper()
	dl, err := download(ctx, t.TempDir(), trigger)
	if err != nil {
		t.Fatalf("browsertest: download: %v", err)
	}
	return dl
}

func download(ctx context.Context, dir string, trigger chromedp.Action[chromedp.Void]) (Downloaded, error) {
	ctx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	// Subscribe before the trigger, so that no event is missed.
	begins := chromedp.Events(ctx, browser.DownloadWillBegin)
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	if err := allowDownloads(ctx, dir); err != nil {
		return Downloaded{}, err
	}
	if err := chromedp.Do(ctx, trigger); err != nil {
		return Downloaded{}, err
	}

	var dl Downloaded
	var guid string
	for ev, err := range begins {
		if err != nil {
			return Downloaded{}, errors.New("no download started: " + err.Error())
		}
		guid, dl.URL, dl.Name = ev.GUID, ev.URL, filepath.Base(ev.SuggestedFilename)
		break
	}
	for ev, err := range progress {
		if err != nil {
			return Downloaded{}, errors.New("the download of " + dl.URL + " did not complete: " + err.Error())
		}
		if ev.GUID != guid {
			continue
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
		case browser.DownloadProgressStateCanceled:
			return Downloaded{}, errors.New("the download of " + dl.URL + " was cancelled")
		default:
			continue
		}
		break
	}

	// allowAndName saves the file under its GUID; give it its name.
	if dl.Name == "" || dl.Name == "." || dl.Name == string(filepath.Separator) {
		dl.Name = "download"
	}
	dl.Path = filepath.Join(dir, dl.Name)
	if err := os.Rename(filepath.Join(dir, guid), dl.Path); err != nil {
		return Downloaded{}, err
	}
	data, err := os.ReadFile(dl.Path)
	if err != nil {
		return Downloaded{}, err
	}
	dl.Data = data
	return dl, nil
}

// allowDownloads lets the tab save downloads into dir, each under its
// GUID, and report them with events.
func allowDownloads(ctx context.Context, dir string) error {
	_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior:      browser.SetDownloadBehaviorBehaviorAllowAndName,
		DownloadPath:  dir,
		EventsEnabled: new(true),
	})
	return err
}
