package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Screenshot writes a PNG of the whole page (beyond the viewport) of the
// tab ctx to t.ArtifactDir(), named after the test and name
// ("TestConsole_home--after-sign-in.png"), logs its path and returns it.
// A second screenshot with the same name in the same test replaces the
// first. See the package documentation for when the file is kept.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	buf, err := chromedp.Run(actx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("browsertest: screenshot %q: %v", name, err)
	}
	path, err := writeArtifact(t, name, buf)
	if err != nil {
		t.Fatalf("browsertest: screenshot %q: %v", name, err)
	}
	t.Logf("browsertest: screenshot %s", path)
	return path
}

// writeArtifact writes a PNG named after the test and name under
// t.ArtifactDir() and returns its path.
func writeArtifact(t testing.TB, name string, png []byte) (string, error) {
	path := filepath.Join(t.ArtifactDir(), fileName(t.Name())+"--"+fileName(name)+".png")
	return path, os.WriteFile(path, png, 0o644)
}

// fileName maps s to a portable file name: letters, digits, '.', '-' and
// '_' are kept, anything else becomes '_'.
func fileName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	s = strings.Trim(s, ".")
	if s == "" {
		return "_"
	}
	return s
}
