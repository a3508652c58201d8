package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// openTimeout bounds opening and migrating the store at start.
const openTimeout = time.Minute

// openedStore is an open, migrated event store.
type openedStore struct {
	db    *sqldb.DB
	store *sqlstore.Store
}

func (o *openedStore) Close() error {
	err := o.store.Close()
	if cerr := o.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// openStore opens the event store the flags name, applies its migrations and
// returns it ready for use.
func openStore(ctx context.Context, cfg *storeConfig, log *slog.Logger) (*openedStore, error) {
	url, err := cfg.eventStoreURL()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	db, err := sqldb.Open(octx, url)
	if err != nil {
		return nil, fmt.Errorf("open event store: %w", err)
	}
	if err := sqlstore.Migrate(octx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrate event store %s: %w", db, err)
	}
	st, err := sqlstore.New(ctx, db, sqlstore.WithLogger(log))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("event store %s: %w", db, err)
	}
	return &openedStore{db: db, store: st}, nil
}

// storeStatus is what status reports.
type storeStatus struct {
	Store string
	Head  eventlog.Position
	// Events is the number of events in the log: the SQL store's positions
	// are dense and start at 1, so it equals the head's commit position.
	Events uint64
}

func (o *openedStore) status(ctx context.Context) (storeStatus, error) {
	head, err := o.store.Head(ctx)
	if err != nil {
		return storeStatus{}, fmt.Errorf("read head: %w", err)
	}
	return storeStatus{Store: o.db.String(), Head: head, Events: head.Commit}, nil
}
