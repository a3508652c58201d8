package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
)

// OpenTimeout bounds opening and migrating the store at start.
const OpenTimeout = time.Minute

// eventStore is an open event log: the SQL store or EventStoreDB.
type eventStore interface {
	eventlog.Store
	Close() error
}

// Store is an open, migrated event store.
type Store struct {
	// Log is the event log.
	Log eventStore
	// db is the event store's database when the store is SQL (the read
	// models' default home); nil for EventStoreDB.
	DB *sqldb.DB
	// Name names the store in logs and status, without secrets.
	Name string
}

func (o *Store) Close() error {
	err := o.Log.Close()
	if o.DB != nil {
		if cerr := o.DB.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// IsEventStoreDB reports whether url names an EventStoreDB/KurrentDB server.
func IsEventStoreDB(url string) bool {
	return strings.HasPrefix(url, "esdb://") || strings.HasPrefix(url, "esdb+discover://")
}

// OpenStore opens the event store cfg names, applies its migrations and
// returns it ready for use.
func OpenStore(ctx context.Context, cfg *Config, log *slog.Logger) (*Store, error) {
	url, err := cfg.EventStoreURL()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, OpenTimeout)
	defer cancel()
	if IsEventStoreDB(url) {
		st, err := eventstoredb.Open(octx, url, eventstoredb.WithLogger(log),
			eventstoredb.WithStreamPrefixes(domain.ChildStreamPrefix, domain.AccountStreamPrefix, domain.IdentityStreamPrefix,
				domain.EmailStreamPrefix, domain.PolicyStream))
		if err != nil {
			return nil, fmt.Errorf("open event store: %w", err)
		}
		return &Store{Log: st, Name: eventstoredb.Redact(url)}, nil
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
	return &Store{Log: st, DB: db, Name: db.String()}, nil
}

// Stores is the event store and the read store of a command.
type Stores struct {
	// Events is the event store as stored: personal data sealed. The
	// ledger reads it (it hashes what is stored).
	Events *Store
	// Log is the event log through the personal-data layer: sealed values
	// opened, or erased. Commands, projections, the index, queries and the
	// relays use it.
	Log *personaldata.Store
	// Keys are the data subjects' keys, in the read store.
	Keys *keystore.Store
	// IDs derives account ids and identity streams under a key derived
	// from the master key (R22).
	IDs *domain.KeyedIDs
	// read holds the read models, the checkpoints, the idempotency keys
	// and the messaging tables: --read-store, or the event store's own
	// database when the event store is SQL.
	Read    *sqldb.DB
	ownRead bool
}

// LogFor is the log the read model named name reads: the events as
// stored for the ledger, which hashes them, and the audit trail, which
// keeps them as stored; opened for every other.
func (s *Stores) LogFor(name string) eventlog.Store {
	if name == ledger.Name || name == audit.Name {
		return s.Events.Log
	}
	return s.Log
}

// OwnsRead reports whether the read store is a database of its own
// (Config.ReadStore), not the event store's.
func (s *Stores) OwnsRead() bool { return s.ownRead }

// Close closes the event store and a read store of its own.
func (s *Stores) Close() error {
	err := s.Events.Close()
	if s.ownRead {
		if cerr := s.Read.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// OpenStores opens the event store and the read store and applies the read
// store's migrations.
func OpenStores(ctx context.Context, cfg *Config, log *slog.Logger) (*Stores, error) {
	if cfg.ReadStore == "" {
		if url, _ := cfg.EventStoreURL(); IsEventStoreDB(url) {
			return nil, fmt.Errorf("%w: an EventStoreDB event store needs --read-store (postgres://... or sqlite:PATH) for the read models", ErrUsage)
		}
	}
	ev, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Stores{Events: ev, Read: ev.DB}
	octx, cancel := context.WithTimeout(ctx, OpenTimeout)
	defer cancel()
	if cfg.ReadStore != "" {
		db, err := sqldb.Open(octx, cfg.ReadStore)
		if err != nil {
			_ = ev.Close()
			return nil, fmt.Errorf("open read store: %w", err)
		}
		s.Read, s.ownRead = db, true
	}
	if err := MigrateReadStore(octx, s.Read); err != nil {
		_ = s.Close()
		return nil, err
	}
	master, err := openMasterKey(octx, cfg, s.Read, log)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	if s.Keys, err = keystore.Open(octx, s.Read, master); err != nil {
		_ = s.Close()
		return nil, err
	}
	if s.IDs, err = domain.NewKeyedIDs(master.Derive("ids")); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.Log = personaldata.New(ev.Log, s.Keys)
	return s, nil
}

// openMasterKey loads the master key of the subjects' keys; it creates one
// only while the key table is empty (a new deployment): a missing key file
// beside stored keys is an error, never a fresh key that opens nothing.
func openMasterKey(ctx context.Context, cfg *Config, read *sqldb.DB, log *slog.Logger) (*keystore.MasterKey, error) {
	path := cfg.MasterKeyPath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		n, err := read.NewSelect().Table("subject_keys").Count(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the subjects' keys: %w", err)
		}
		if n > 0 {
			return nil, fmt.Errorf("%w: %s is missing but the read store holds %d data subjects' keys wrapped by a master key: "+
				"restore the file (or give --master-key)", keystore.ErrBadMasterKey, path, n)
		}
	}
	m, created, err := keystore.LoadOrCreateMasterKey(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("personal data: created the master key of the data subjects' keys; keep a copy in your secret store, "+
			"every replica needs it and without it no personal field can be read", "file", path, "key_id", m.ID())
	}
	return m, nil
}

// StoreStatus is what status reports.
type StoreStatus struct {
	Store string
	Head  eventlog.Position
	// Events is the number of events in the log when the store can tell
	// cheaply: the SQL store's positions are dense and start at 1, so it
	// equals the head's commit position. -1 for EventStoreDB.
	Events int64
}

func (o *Store) Status(ctx context.Context) (StoreStatus, error) {
	head, err := o.Log.Head(ctx)
	if err != nil {
		return StoreStatus{}, fmt.Errorf("read head: %w", err)
	}
	s := StoreStatus{Store: o.Name, Head: head, Events: -1}
	if o.DB != nil {
		s.Events = int64(head.Commit)
	}
	return s, nil
}
