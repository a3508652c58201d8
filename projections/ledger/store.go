package ledger

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/mod/sumdb/note"

	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the checkpoint table's migrations are recorded
// under: pass it with Migrations to sqldb.Migrate.
const Component = "ledger"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the migrations of the ledger_checkpoints table for
// PostgreSQL and SQLite. The tree's own tables belong to the projection
// (its runner creates them).
func Migrations() (postgres, sqlite fs.FS) { return sqlmigrations.Split(migrationFiles) }

// Signed is a published checkpoint: the checkpoint, its signed note, and
// where it was found.
type Signed struct {
	Checkpoint
	Note   []byte
	Source string // "database", or the file's path
	At     time.Time
}

type checkpointRow struct {
	bun.BaseModel `bun:"table:ledger_checkpoints,alias:c"`

	TreeSize    int64  `bun:"tree_size"`
	Root        string `bun:"root"`
	Note        string `bun:"note"`
	PublishedAt int64  `bun:"published_at"`
	PublishedBy string `bun:"published_by"`
}

// saveCheckpoint stores a published checkpoint; a row for the same size is
// kept as it is (Verify compares them).
func saveCheckpoint(ctx context.Context, db bun.IDB, s Signed, by string) error {
	row := checkpointRow{TreeSize: s.Size, Root: s.Root.String(), Note: string(s.Note),
		PublishedAt: s.At.UnixMicro(), PublishedBy: by}
	_, err := db.NewInsert().Model(&row).On("CONFLICT (tree_size) DO NOTHING").Exec(ctx)
	if err != nil {
		return fmt.Errorf("ledger: store checkpoint %d: %w", s.Size, err)
	}
	return nil
}

// StoredCheckpoints returns the signed notes of the database's table, by
// size, the newest ones only when newest > 0; they are not opened (OpenAll
// checks them).
func StoredCheckpoints(ctx context.Context, db bun.IDB, newest int) ([]Signed, error) {
	var rows []checkpointRow
	q := db.NewSelect().Model(&rows).OrderExpr("tree_size DESC")
	if newest > 0 {
		q = q.Limit(int64(newest))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("ledger: read the stored checkpoints: %w", err)
	}
	out := make([]Signed, len(rows))
	for i, r := range rows {
		out[len(rows)-1-i] = Signed{Note: []byte(r.Note), Source: "database", At: time.UnixMicro(r.PublishedAt).UTC()}
	}
	return out, nil
}

// LatestStored returns the newest checkpoint of the database's table, opened
// with v; ok is false when there is none.
func LatestStored(ctx context.Context, db bun.IDB, v note.Verifier) (Signed, bool, error) {
	var rows []checkpointRow
	if err := db.NewSelect().Model(&rows).OrderExpr("tree_size DESC").Limit(1).Scan(ctx); err != nil {
		return Signed{}, false, fmt.Errorf("ledger: read the latest checkpoint: %w", err)
	}
	if len(rows) == 0 {
		return Signed{}, false, nil
	}
	cp, err := OpenCheckpoint([]byte(rows[0].Note), v)
	if err != nil {
		return Signed{}, false, fmt.Errorf("stored checkpoint of size %d: %w", rows[0].TreeSize, err)
	}
	return Signed{Checkpoint: cp, Note: []byte(rows[0].Note), Source: "database",
		At: time.UnixMicro(rows[0].PublishedAt).UTC()}, true, nil
}

// checkpointFile is the name of the file of the checkpoint of size n in a
// checkpoint directory.
func checkpointFile(n int64) string { return fmt.Sprintf("checkpoint-%012d.note", n) }

// writeCheckpointFile writes s into dir as a new file of mode 0644 (the
// checkpoint holds no personal data), never overwriting one: a file of the
// same size with the same note is left as it is; with another note it is an
// error wrapping ErrMismatch, a fork of the log.
func writeCheckpointFile(dir string, s Signed) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("ledger: checkpoint directory: %w", err)
	}
	path := filepath.Join(dir, checkpointFile(s.Size))
	removeStaleTemp(dir)
	// Written whole to a temporary file first and then linked to its name,
	// which fails when the name exists: a crash never leaves a partial
	// checkpoint under a checkpoint's name, and none is ever overwritten.
	tmp, err := os.CreateTemp(dir, ".checkpoint-*.tmp")
	if err != nil {
		return "", fmt.Errorf("ledger: create a checkpoint file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(s.Note)
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		return "", fmt.Errorf("ledger: write %s: %w", tmp.Name(), err)
	}
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		old, rerr := os.ReadFile(path)
		if rerr != nil {
			return "", fmt.Errorf("ledger: read %s: %w", path, rerr)
		}
		if bytes.Equal(old, s.Note) {
			return path, nil
		}
		oldCp, oerr := ParseCheckpointBody(noteBody(old))
		if oerr == nil && oldCp.Root == s.Root {
			return path, nil // the same tree, signed by another replica's copy of the key
		}
		return "", fmt.Errorf("%w: %s already holds another checkpoint of size %d", ErrMismatch, path, s.Size)
	}
	if err != nil {
		return "", fmt.Errorf("ledger: create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return path, nil
}

// staleTemp is the age after which a temporary checkpoint file is taken
// for one left by a crash (a publish takes milliseconds).
const staleTemp = time.Minute

// removeStaleTemp removes the temporary files that crashed publishes left
// in dir; younger ones may be another replica's publish in progress.
func removeStaleTemp(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, ".checkpoint-*.tmp"))
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > staleTemp {
			_ = os.Remove(p)
		}
	}
}

// noteBody returns the text of a signed note before its signatures.
func noteBody(msg []byte) string {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return ""
	}
	return string(msg[:i+1])
}

// ReadCheckpointDir returns the checkpoint files of dir (checkpoint-*.note),
// not yet opened, the newest (largest) ones only when newest > 0. A
// directory that does not exist holds none.
func ReadCheckpointDir(dir string, newest int) ([]Signed, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read checkpoint directory %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), "checkpoint-") || !strings.HasSuffix(e.Name(), ".note") {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names) // the sizes are zero-padded: by size
	if newest > 0 && len(names) > newest {
		names = names[len(names)-newest:]
	}
	var out []Signed
	for _, name := range names {
		s, err := ReadCheckpointFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ReadCheckpointFile reads one checkpoint file, not yet opened.
func ReadCheckpointFile(path string) (Signed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Signed{}, fmt.Errorf("ledger: read checkpoint %s: %w", path, err)
	}
	s := Signed{Note: b, Source: path}
	if fi, err := os.Stat(path); err == nil {
		s.At = fi.ModTime().UTC()
	}
	return s, nil
}

// OpenAll opens every note of notes with v. It returns the checkpoints that
// open, one per size, sorted by size, and a problem for each note that does
// not open (a bad signature, another key) and for each size signed with two
// different roots (a fork).
func OpenAll(notes []Signed, v note.Verifier) ([]Signed, []Problem) {
	bySize := map[int64]Signed{}
	var problems []Problem
	for _, s := range notes {
		cp, err := OpenCheckpoint(s.Note, v)
		var unverified *note.UnverifiedNoteError
		switch {
		case errors.As(err, &unverified) && len(unverified.Note.UnverifiedSigs) > 0:
			sig := unverified.Note.UnverifiedSigs[0]
			problems = append(problems, Problem{Kind: KindSignature, LeafIndex: -1, Detail: fmt.Sprintf(
				"checkpoint %s is signed by key %s+%08x, not by this ledger's key %s+%08x: every replica must sign with the same key "+
					"(--ledger-key), and a checkpoint signed by another key cannot be checked here", s.Source, sig.Name, sig.Hash, v.Name(), v.KeyHash())})
			continue
		case err != nil:
			problems = append(problems, Problem{Kind: KindSignature, LeafIndex: -1,
				Detail: fmt.Sprintf("checkpoint %s does not open with the ledger's public key: %v", s.Source, err)})
			continue
		}
		s.Checkpoint = cp
		if old, dup := bySize[cp.Size]; dup {
			if old.Root != cp.Root {
				problems = append(problems, Problem{Kind: KindFork, LeafIndex: -1,
					Detail: fmt.Sprintf("two checkpoints of size %d with different roots: %s (%s) and %s (%s)",
						cp.Size, old.Root, old.Source, cp.Root, s.Source)})
			}
			continue
		}
		bySize[cp.Size] = s
	}
	out := make([]Signed, 0, len(bySize))
	for _, s := range bySize {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Size < out[j].Size })
	return out, problems
}
