package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The domain is pure: it depends on the standard library and
// github.com/google/uuid only, does no I/O and reads no clock (doc.go,
// docs/architecture.md). These tests enforce it for every package under
// domain/, including ones added later.

// forbiddenImport reports whether a domain package may not import path
// directly: networking, the file system and processes, SQL.
func forbiddenImport(path string) bool {
	switch path {
	case "net", "os", "database/sql", "syscall", "plugin", "io/ioutil":
		return true
	}
	for _, prefix := range []string{"net/", "os/", "database/sql/", "syscall/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// allowedThirdParty are the only packages outside the standard library and
// the module's own domain packages that the domain may depend on.
var allowedThirdParty = map[string]bool{"github.com/google/uuid": true}

type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	DepOnly    bool
	Imports    []string
	Deps       []string
	Module     *struct {
		Path string
		Main bool
	}
	Error *struct{ Err string }
}

// moduleRoot finds the directory of go.mod above the test's directory, and
// the module path it declares.
func moduleRoot(t *testing.T) (dir, modulePath string) {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	for dir = wd; ; {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					modulePath = strings.Trim(strings.TrimSpace(rest), `"`)
					if unq, err := strconv.Unquote(strings.TrimSpace(rest)); err == nil {
						modulePath = unq
					}
				}
			}
			require.NotEmpty(t, modulePath, "no module line in %s/go.mod", dir)
			// go.sum pins the versions of the dependencies: read it so that a
			// cached test result is invalidated when it changes.
			_, _ = os.ReadFile(filepath.Join(dir, "go.sum"))
			return dir, modulePath
		}
		require.ErrorIs(t, err, fs.ErrNotExist)
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above %s", wd)
		dir = parent
	}
}

func goCommand(t *testing.T) string {
	t.Helper()
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		if p := filepath.Join(goroot, "bin", "go"); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to list the domain's dependencies")
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func TestDomainImportsOnlyStdlibAndUUID(t *testing.T) {
	root, modulePath := moduleRoot(t)
	domainPath := modulePath + "/domain"
	inDomain := func(p string) bool { return p == domainPath || strings.HasPrefix(p, domainPath+"/") }

	cmd := exec.Command(goCommand(t), "list", "-e", "-deps", "-json", "./domain/...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())

	pkgs := map[string]*listedPackage{}
	var targets []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		pkgs[p.ImportPath] = &p
		if !p.DepOnly {
			targets = append(targets, &p)
		}
	}
	var names []string
	for _, p := range targets {
		names = append(names, p.ImportPath)
	}
	require.Contains(t, names, domainPath, "go list found the domain package")
	require.Contains(t, names, domainPath+"/eventlog", "go list found the eventlog package")

	for _, p := range targets {
		require.True(t, inDomain(p.ImportPath), "%s listed for ./domain/...", p.ImportPath)
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		for _, imp := range p.Imports {
			if forbiddenImport(imp) {
				t.Errorf("%s imports %s: the domain does no I/O", p.ImportPath, imp)
			}
		}
		for _, dep := range p.Deps {
			d := pkgs[dep]
			switch {
			case d == nil:
				t.Errorf("%s depends on %s, which go list did not describe", p.ImportPath, dep)
			case d.Standard:
			case allowedThirdParty[dep]:
			case inDomain(dep) && d.Module != nil && d.Module.Main:
			default:
				t.Errorf("%s depends on %s: the domain may depend only on the standard library, "+
					"github.com/google/uuid and its own packages", p.ImportPath, dep)
			}
		}
	}
}

// clockFuncs are the functions of package time that read the clock, wait on
// it, or read the machine's time zone. None is called in the domain: time is
// always an argument.
var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
	"Tick": true, "NewTicker": true, "NewTimer": true, "Local": true, "LoadLocation": true,
}

// TestDomainNeverReadsTheClock scans the domain's non-test Go files for
// time.Now( and the other clock readers (through any name the file gives the
// time package).
func TestDomainNeverReadsTheClock(t *testing.T) {
	root, _ := moduleRoot(t)
	domainDir := filepath.Join(root, "domain")
	var files []string
	err := filepath.WalkDir(domainDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != domainDir && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)

	var found []string
	fset := token.NewFileSet()
	for _, path := range files {
		src, err := os.ReadFile(path)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, path)
		if bytes.Contains(stripComments(t, fset, path, src), []byte("time.Now(")) {
			found = append(found, rel+": time.Now(")
		}
		file, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		require.NoError(t, err)
		timeName := ""
		for _, imp := range file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		if timeName == "" || timeName == "_" {
			continue
		}
		if timeName == "." {
			found = append(found, rel+": dot-imports time")
			continue
		}
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName && clockFuncs[sel.Sel.Name] {
				found = append(found, fset.Position(sel.Pos()).String()+": "+timeName+"."+sel.Sel.Name)
			}
			return true
		})
	}
	sort.Strings(found)
	require.Empty(t, found, "the domain reads the clock: pass the time in as an argument")
}

// stripComments returns src with its comments blanked out, so that a comment
// that mentions time.Now() is not taken for a call.
func stripComments(t *testing.T, fset *token.FileSet, path string, src []byte) []byte {
	t.Helper()
	file, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
	require.NoError(t, err)
	out := append([]byte(nil), src...)
	tf := fset.File(file.Pos())
	for _, group := range file.Comments {
		for _, c := range group.List {
			start, end := tf.Offset(c.Pos()), tf.Offset(c.End())
			for i := start; i < end; i++ {
				if out[i] != '\n' {
					out[i] = ' '
				}
			}
		}
	}
	return out
}
