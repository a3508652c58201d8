package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
)

// benchDataFormat versions the cached data set's description: a cache of
// another format is generated again.
const benchDataFormat = 1

// Bounds of what the sampler keeps, whatever the scale.
const (
	maxSampleChildren = 20_000
	maxSampleCarers   = 5_000
	maxSampleMembers  = 20_000
)

// benchData describes a generated data set: its summary and the ids the
// load tool drives commands and queries with.
type benchData struct {
	Format int `json:"format"`
	// Generator is the datagen.Version that generated the data set.
	Generator int             `json:"generator"`
	Scale     string          `json:"scale"`
	Seed      uint64          `json:"seed"`
	Summary   datagen.Summary `json:"summary"`
	// Children are registered children with the worker allocated to them
	// at the end of the history (the first maxSampleChildren registered).
	Children []sampleChild `json:"children"`
	// Carers are foster carers' accounts not closed at the end of the
	// history (the expiry measurement places children with them); Members
	// the network members' (parents, guardians, others); both make the
	// random pairs of the check measurements.
	Carers  []uuid.UUID    `json:"carers"`
	Members []sampleMember `json:"members"`
}

type sampleChild struct {
	ID     uuid.UUID `json:"id"`
	Worker string    `json:"worker"`
}

type sampleMember struct {
	ID   uuid.UUID          `json:"id"`
	Kind domain.AccountKind `json:"kind"`
}

// sampler watches the generated appends and keeps the first children and
// accounts of each kind, with what the command mix needs of them: the
// child's current worker, and whether an account was closed.
type sampler struct {
	children    []sampleChild
	childIndex  map[uuid.UUID]int
	accounts    []sampleMember
	accountIdx  map[uuid.UUID]int
	closed      map[uuid.UUID]bool
	carers      int
	members     int
	decodeError error
}

func newSampler() *sampler {
	return &sampler{childIndex: map[uuid.UUID]int{}, accountIdx: map[uuid.UUID]int{}, closed: map[uuid.UUID]bool{}}
}

// observe takes one batch of generated appends.
func (s *sampler) observe(batch []datagen.Append) {
	for _, a := range batch {
		for _, e := range a.Events {
			switch e.Type {
			case domain.TypeChildRegistered, domain.TypeWorkerAllocated, domain.TypeAccountInvited, domain.TypeAccountClosed:
			default:
				continue
			}
			ev, err := domain.Decode(e.Type, e.Data)
			if err != nil {
				if s.decodeError == nil {
					s.decodeError = fmt.Errorf("decode generated %s: %w", e.Type, err)
				}
				continue
			}
			s.apply(ev)
		}
	}
}

func (s *sampler) apply(ev domain.Event) {
	switch ev := ev.(type) {
	case *domain.ChildRegistered:
		if _, ok := s.childIndex[ev.ChildID]; !ok && len(s.children) < maxSampleChildren {
			s.childIndex[ev.ChildID] = len(s.children)
			s.children = append(s.children, sampleChild{ID: ev.ChildID, Worker: ev.WorkerID})
		}
	case *domain.WorkerAllocated:
		if i, ok := s.childIndex[ev.ChildID]; ok {
			s.children[i].Worker = ev.WorkerID
		}
	case *domain.AccountInvited:
		if _, ok := s.accountIdx[ev.AccountID]; ok {
			return
		}
		if ev.Kind == domain.KindFosterCarer {
			if s.carers >= maxSampleCarers {
				return
			}
			s.carers++
		} else {
			if s.members >= maxSampleMembers {
				return
			}
			s.members++
		}
		s.accountIdx[ev.AccountID] = len(s.accounts)
		s.accounts = append(s.accounts, sampleMember{ID: ev.AccountID, Kind: ev.Kind})
	case *domain.AccountClosed:
		if _, ok := s.accountIdx[ev.AccountID]; ok {
			s.closed[ev.AccountID] = true
		}
	}
}

// data returns what the sampler kept: children with a worker, accounts
// not closed.
func (s *sampler) data(sc datagen.Scale, seed uint64, sum datagen.Summary) (*benchData, error) {
	if s.decodeError != nil {
		return nil, s.decodeError
	}
	d := &benchData{Format: benchDataFormat, Generator: datagen.Version, Scale: sc.Name, Seed: seed, Summary: sum}
	for _, c := range s.children {
		if c.Worker != "" {
			d.Children = append(d.Children, c)
		}
	}
	for _, a := range s.accounts {
		switch {
		case s.closed[a.ID]:
		case a.Kind == domain.KindFosterCarer:
			d.Carers = append(d.Carers, a.ID)
		default:
			d.Members = append(d.Members, a)
		}
	}
	if len(d.Children) == 0 || len(d.Carers) == 0 || len(d.Members) == 0 {
		return nil, fmt.Errorf("the data set has too few open records to drive commands: %d children with a worker, %d carers, %d members",
			len(d.Children), len(d.Carers), len(d.Members))
	}
	return d, nil
}

// loadBenchData reads a cached data set's description; nil when there is
// none or it is of another format, generator version, scale or seed.
func loadBenchData(path string, sc datagen.Scale, seed uint64) (*benchData, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d benchData
	if err := json.Unmarshal(b, &d); err != nil || d.Format != benchDataFormat || d.Generator != datagen.Version || d.Scale != sc.Name || d.Seed != seed {
		return nil, nil // an unreadable or other cache is generated again
	}
	return &d, nil
}

// save writes the description atomically (the cache is valid once it is
// there).
func (d *benchData) save(path string) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dataset is a data set loaded into a store for one run.
type dataset struct {
	store string // sqlite or postgres
	url   string // the event store (and read store) URL
	data  *benchData
	// built: the read models were built by this run (their rebuild was
	// measured already).
	built bool
	// dir holds the ledger's key and checkpoints of the engine runs on
	// this data set (its data directory), removed by cleanup.
	dir     string
	cleanup func()
}

// sqliteData returns the data set in a SQLite file of its own: a copy of
// the cache in the work directory (events and read models), generated
// first when the cache holds no data set of this scale and seed.
func (b *bencher) sqliteData(ctx context.Context) (*dataset, error) {
	base := filepath.Join(b.workDir, fmt.Sprintf("%s-seed%d", b.sc.Name, b.cfg.seed))
	cache, meta := base+".db", base+".json"
	data, err := loadBenchData(meta, b.sc, b.cfg.seed)
	if err != nil {
		return nil, err
	}
	built := false
	if data == nil {
		removeSQLite(cache)
		if data, err = b.build(ctx, "sqlite", "sqlite:"+cache); err != nil {
			removeSQLite(cache)
			return nil, err
		}
		if err := data.save(meta); err != nil {
			return nil, fmt.Errorf("save the data set's description: %w", err)
		}
		built = true
	} else {
		fmt.Fprintf(b.progress, "bench: using the cached data set %s (%d events)\n", cache, data.Summary.Events)
	}
	// The run's copy is its own (a directory per run), so that runs
	// sharing a --work-dir never write into each other's copy.
	runDir, err := os.MkdirTemp(b.workDir, "run-sqlite-")
	if err != nil {
		return nil, err
	}
	run, dir := filepath.Join(runDir, "run-sqlite.db"), filepath.Join(runDir, "data")
	for _, suffix := range []string{"", "-wal"} {
		if err := copyFile(cache+suffix, run+suffix); err != nil && !(suffix != "" && errors.Is(err, fs.ErrNotExist)) {
			_ = os.RemoveAll(runDir)
			return nil, fmt.Errorf("copy the cached data set: %w", err)
		}
	}
	return &dataset{store: "sqlite", url: "sqlite:" + run, data: data, built: built, dir: dir,
		cleanup: func() { _ = os.RemoveAll(runDir) }}, nil
}

// postgresData generates the data set into a new schema of the --postgres
// database, dropped by cleanup.
func (b *bencher) postgresData(ctx context.Context) (*dataset, error) {
	schema := fmt.Sprintf("accessbench_%s_%d_%d", b.sc.Name, b.cfg.seed, os.Getpid())
	u, drop, err := b.newSchema(ctx, schema)
	if err != nil {
		return nil, err
	}
	data, err := b.build(ctx, "postgres", u)
	if err != nil {
		drop()
		return nil, err
	}
	dir := filepath.Join(b.workDir, schema+"-data")
	return &dataset{store: "postgres", url: u, data: data, built: true, dir: dir,
		cleanup: func() { drop(); _ = os.RemoveAll(dir) }}, nil
}

// newSchema creates the schema (dropped first if it exists) in the
// --postgres database and returns the URL of a store in it and what drops
// it (unless --keep).
func (b *bencher) newSchema(ctx context.Context, schema string) (string, func(), error) {
	u, err := url.Parse(b.cfg.postgres)
	if err != nil {
		return "", nil, fmt.Errorf("%w: --postgres: %v", engine.ErrUsage, err)
	}
	admin, err := sqldb.Open(ctx, b.cfg.postgres)
	if err != nil {
		return "", nil, fmt.Errorf("open --postgres: %w", err)
	}
	defer admin.Close()
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
		return "", nil, fmt.Errorf("drop schema %s: %w", schema, err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+ident); err != nil {
		return "", nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	drop := func() {
		if b.cfg.keep {
			fmt.Fprintf(b.progress, "bench: kept schema %s\n", schema)
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		db, err := sqldb.Open(dctx, b.cfg.postgres)
		if err != nil {
			b.log.Warn("bench: drop schema", "schema", schema, "err", err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(dctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			b.log.Warn("bench: drop schema", "schema", schema, "err", err)
		}
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

// build generates the data set into the store at url (through
// AppendBatch), then builds the read models with projections.Rebuild; both
// are measured.
func (b *bencher) build(ctx context.Context, store, url string) (*benchData, error) {
	cfg := engine.Config{EventStore: url, MasterKey: b.masterKeyPath()}
	st, err := engine.OpenStores(ctx, &cfg, b.log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	s := newSampler()
	g, err := GenerateInto(ctx, st.Events, b.sc, GenerateConfig{Seed: b.cfg.seed, Batch: datagen.DefaultBatchAppends},
		b.progress, b.log, s.observe)
	if err != nil {
		return nil, err
	}
	b.add(figure{Name: "generate", Store: store, Fsync: b.fsync[store], Concurrency: 1, Seconds: g.Elapsed.Seconds(),
		Count: g.Summary.Events, Unit: "events", PerSecond: g.Rate(),
		Values: valueList{{"appends", float64(g.Summary.Appends)}, {"batch_appends", datagen.DefaultBatchAppends}}})
	data, err := s.data(b.sc, b.cfg.seed, g.Summary)
	if err != nil {
		return nil, err
	}
	if err := b.rebuild(ctx, store, st); err != nil {
		return nil, err
	}
	return data, nil
}

// copyFile copies src to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// removeSQLite removes a SQLite database file and its WAL and shared
// memory files.
func removeSQLite(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		_ = os.Remove(path + suffix)
	}
}

// redactURL drops the password of a URL for the report.
func redactURL(s string) string {
	if strings.HasPrefix(s, "sqlite:") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// masterKeyPath is the master key of every store of the run, in the work
// directory beside the cached data sets (whose read stores hold keys
// wrapped by it).
func (b *bencher) masterKeyPath() string { return filepath.Join(b.workDir, "master-key") }
