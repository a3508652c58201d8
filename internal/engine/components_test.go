package engine_test

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/engine"
)

// TestEveryComponentIsRegistered: every package that declares migrations
// (a func Migrations) is in Components, under its Component name,
// so serve, migrate and status cannot miss its tables again (they once
// missed three). The event store's own migrations are the store's.
func TestEveryComponentIsRegistered(t *testing.T) {
	t.Parallel()
	registered := map[string]bool{}
	for _, c := range engine.Components() {
		registered[c.Name] = true
	}
	declared := map[string]string{} // package dir → its Component
	root := filepath.Join("..", "..")
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(gotoken.NewFileSet(), path, nil, 0)
		require.NoError(t, err)
		dir := filepath.Dir(path)
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.Name == "Migrations" {
					if _, ok := declared[dir]; !ok {
						declared[dir] = ""
					}
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					v, ok := spec.(*ast.ValueSpec)
					if !ok || len(v.Names) != 1 || v.Names[0].Name != "Component" || len(v.Values) != 1 {
						continue
					}
					if lit, ok := v.Values[0].(*ast.BasicLit); ok {
						name, err := strconv.Unquote(lit.Value)
						require.NoError(t, err)
						declared[dir+"#component"] = name
					}
				}
			}
		}
		return nil
	}))
	var dirs []string
	for dir := range declared {
		if !strings.HasSuffix(dir, "#component") {
			dirs = append(dirs, dir)
		}
	}
	slices.Sort(dirs)
	require.GreaterOrEqual(t, len(dirs), 6, "the walk found the components")
	for _, dir := range dirs {
		name, ok := declared[dir+"#component"]
		require.True(t, ok, "%s declares Migrations but no Component name", dir)
		require.True(t, registered[name], "%s (component %q) declares migrations that Components does not list", dir, name)
	}
}
