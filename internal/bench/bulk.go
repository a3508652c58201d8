package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/importer"
)

// bulkImport measures loading relationships in bulk as accessd import
// does: a generated legacy export of --import-lines lines
// (datagen.ImportLines: children, activated accounts, placements, grants)
// read, checked against a new, empty deployment on the store, and appended
// in batches with its personal data sealed. The figure is the events
// appended over the whole time, reading and checking included.
func (b *bencher) bulkImport(ctx context.Context, store string) error {
	url, dir, cleanup, err := b.emptyStore(ctx, store, "bulk")
	if err != nil {
		return err
	}
	defer cleanup()
	cfg := engine.Config{EventStore: url, DataDir: dir, MasterKey: b.masterKeyPath()}
	st, err := engine.OpenStores(ctx, &cfg, b.log)
	if err != nil {
		return err
	}
	defer st.Close()
	file := strings.Join(datagen.ImportLines(b.cfg.importLines), "\n")
	actor, err := domain.ImportActor("bench")
	if err != nil {
		return err
	}
	var res importer.Applied
	var plan *importer.Plan
	var checked, took time.Duration
	err = b.profiled("bulk-import", store, func() error {
		start := time.Now()
		recs, err := importer.Read(strings.NewReader(file))
		if err != nil {
			return fmt.Errorf("read the import file: %w", err)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		plan, err = importer.Prepare(ctx, st.Log, recs, importer.Options{Actor: actor, Policy: domain.DefaultPolicy,
			Now: time.Now(), CorrelationID: id, IDs: st.IDs})
		if err != nil {
			return fmt.Errorf("check the import file: %w", err)
		}
		checked = time.Since(start)
		res, err = plan.Apply(ctx, st.Log, importer.ApplyOptions{})
		took = time.Since(start)
		if err != nil {
			return fmt.Errorf("append the import: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f := figure{Name: "bulk.import", Store: store, Fsync: b.fsync[store], Concurrency: 1, Seconds: took.Seconds(),
		Count: int64(res.Events), Unit: "events", PerSecond: float64(res.Events) / took.Seconds(),
		Values: valueList{{"lines", float64(b.cfg.importLines)}, {"streams", float64(res.Streams)}, {"writes", float64(res.Writes)},
			{"read_and_checked_seconds", checked.Seconds()}, {"appended_seconds", (took - checked).Seconds()}},
		Note: "accessd import of a generated legacy export into an empty deployment: read, checked, appended, personal data sealed"}
	f.met(fmt.Sprintf("≥ %s events/s", human(targetBulkRate)), res.Events > 0 && f.PerSecond >= targetBulkRate)
	b.add(f)
	return nil
}

// emptyStore returns a new, empty store of the kind for a measurement of
// its own, with a data directory, and what removes both.
func (b *bencher) emptyStore(ctx context.Context, store, name string) (url, dir string, cleanup func(), err error) {
	dir = filepath.Join(b.workDir, name+"-"+store+"-data")
	if err := os.RemoveAll(dir); err != nil {
		return "", "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", nil, err
	}
	if store == "sqlite" {
		file := filepath.Join(b.workDir, name+"-sqlite.db")
		removeSQLite(file)
		return "sqlite:" + file, dir, func() { removeSQLite(file); _ = os.RemoveAll(dir) }, nil
	}
	url, drop, err := b.newSchema(ctx, fmt.Sprintf("accessbench_%s_%d", name, os.Getpid()))
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", nil, err
	}
	return url, dir, func() { drop(); _ = os.RemoveAll(dir) }, nil
}
