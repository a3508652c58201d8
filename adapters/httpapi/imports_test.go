package httpapi

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImports: the HTTP adapter is thin. It reaches the engine through the
// command and query services only: no database package, no read model, no
// event store adapter (issue 13's layering).
func TestImports(t *testing.T) {
	forbidden := []string{
		"github.com/uptrace/bun",
		"github.com/accessledger/accessledger/projections",
		"github.com/accessledger/accessledger/adapters/sql",
		"github.com/accessledger/accessledger/adapters/securitylog",
		"github.com/accessledger/accessledger/adapters/eventstoredb",
	}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range parsed.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			for _, bad := range forbidden {
				require.False(t, strings.HasPrefix(path, bad),
					"%s imports %s", f, path)
			}
		}
		checked++
	}
	require.Greater(t, checked, 5)
}
