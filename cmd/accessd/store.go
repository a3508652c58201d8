package main

import (
	"context"

	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// openTimeout bounds opening and migrating the store at start.
const openTimeout = time.Minute

// eventStore is an open event log: the SQL store or EventStoreDB.
type eventStore interface {
	eventlog.Store
	Close() error
}

// openedStore is an open, migrated event store.
type openedStore struct {
	log eventStore
	// db is the event store's database when the store is SQL (the read
	// models' default home); nil for EventStoreDB.
	db *sqldb.DB
	// name names the store in logs and status, without secrets.
	name string
}

func (o *openedStore) Close() error {
	err := o.log.Close()
	if o.db != nil {
		if cerr := o.db.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// isEventStoreDB reports whether url names an EventStoreDB/KurrentDB server.
func isEventStoreDB(url string) bool {
	return strings.HasPrefix(url, "esdb://") || strings.HasPrefix(url, "esdb+discover://")
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
	if isEventStoreDB(url) {
		st, err := eventstoredb.Open(octx, url, eventstoredb.WithLogger(log),
			eventstoredb.WithStreamPrefixes(domain.ChildStreamPrefix, domain.AccountStreamPrefix, domain.IdentityStreamPrefix))
		if err != nil {
			return nil, fmt.Errorf("open event store: %w", err)
		}
		return &openedStore{log: st, name: eventstoredb.Redact(url)}, nil
	}
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
	return &openedStore{log: st, db: db, name: db.String()}, nil
}

// stores is the event store and the read store of a command.
type stores struct {
	events *openedStore
	// read holds the read models, the checkpoints, the idempotency keys
	// and the messaging tables: --read-store, or the event store's own
	// database when the event store is SQL.
	read    *sqldb.DB
	ownRead bool
}

func (s *stores) Close() error {
	err := s.events.Close()
	if s.ownRead {
		if cerr := s.read.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// openStores opens the event store and the read store and applies the read
// store's migrations.
func openStores(ctx context.Context, cfg *storeConfig, log *slog.Logger) (*stores, error) {
	if cfg.readStore == "" {
		if url, _ := cfg.eventStoreURL(); isEventStoreDB(url) {
			return nil, fmt.Errorf("%w: an EventStoreDB event store needs --read-store (postgres://... or sqlite:PATH) for the read models", errUsage)
		}
	}
	ev, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &stores{events: ev, read: ev.db}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if cfg.readStore != "" {
		db, err := sqldb.Open(octx, cfg.readStore)
		if err != nil {
			_ = ev.Close()
			return nil, fmt.Errorf("open read store: %w", err)
		}
		s.read, s.ownRead = db, true
	}
	if err := migrateReadStore(octx, s.read); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// storeStatus is what status reports.
type storeStatus struct {
	Store string
	Head  eventlog.Position
	// Events is the number of events in the log when the store can tell
	// cheaply: the SQL store's positions are dense and start at 1, so it
	// equals the head's commit position. -1 for EventStoreDB.
	Events int64
}

func (o *openedStore) status(ctx context.Context) (storeStatus, error) {
	head, err := o.log.Head(ctx)
	if err != nil {
		return storeStatus{}, fmt.Errorf("read head: %w", err)
	}
	s := storeStatus{Store: o.name, Head: head, Events: -1}
	if o.db != nil {
		s.Events = int64(head.Commit)
	}
	return s, nil
}

// eventsText prints an event count, or "unknown".
func eventsText(n int64) string {
	if n < 0 {
		return "unknown (EventStoreDB positions are not counts)"
	}
	return fmt.Sprint(n)
}
