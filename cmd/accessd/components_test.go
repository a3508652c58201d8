package main

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/engine"
)

// TestMigrateAppliesEveryComponent: after engine.MigrateReadStore on an empty
// database, status reports every component's migrations applied; before,
// none.
func TestMigrateAppliesEveryComponent(t *testing.T) {
	t.Parallel()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { migrateAppliesEveryComponent(t, b.URL(t)) })
	}
}

func migrateAppliesEveryComponent(t *testing.T, url string) {
	ctx := context.Background()
	db := sqltest.Open(t, url)
	var before bytes.Buffer
	printSchemaStatus(ctx, &environment{stdout: &before}, db)
	require.NoError(t, engine.MigrateReadStore(ctx, db))
	require.NoError(t, engine.MigrateReadStore(ctx, db), "again: nothing to do")
	var after bytes.Buffer
	printSchemaStatus(ctx, &environment{stdout: &after}, db)
	for _, c := range engine.Components() {
		applied, total, err := c.Progress(ctx, db)
		require.NoError(t, err)
		require.Positive(t, total, c.Name)
		require.Equal(t, total, applied, c.Name)
		require.Contains(t, before.String(), "schema "+c.Name+": 0 of ")
		require.Contains(t, after.String(), "schema "+c.Name+": "+strconv.Itoa(total)+" of "+strconv.Itoa(total)+" migrations applied\n")
	}
}
