package engine

import (
	"context"
	"fmt"

	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// Components is the one list of the components with tables of
// their own in the read store, and their migrations: `accessd serve` and
// `accessd migrate` apply them all (migrateReadStore), `accessd status`
// reports each. The read models' tables are not here: the projection
// runner creates them, per generation. A test fails when a package
// declares migrations that are not in this list.
func Components() []sqldb.Component {
	return []sqldb.Component{
		{Name: projections.Component, Migrations: projections.Migrations},
		{Name: securitylog.Component, Migrations: securitylog.Migrations},
		{Name: idempotency.Component, Migrations: idempotency.Migrations},
		{Name: ledger.Component, Migrations: ledger.Migrations},
		{Name: outbox.Component, Migrations: outbox.Migrations},
		{Name: processmanager.Component, Migrations: processmanager.Migrations},
		{Name: keystore.Component, Migrations: keystore.Migrations},
		{Name: viewlog.Component, Migrations: viewlog.Migrations},
	}
}

// MigrateReadStore applies the migrations of every component of the read
// store (readStoreComponents), so that `accessd migrate` prepares all of it
// ahead of a rollout.
func MigrateReadStore(ctx context.Context, db *sqldb.DB) error {
	for _, c := range Components() {
		if err := c.Migrate(ctx, db); err != nil {
			return fmt.Errorf("migrate read store %s: %w", db, err)
		}
	}
	return nil
}
