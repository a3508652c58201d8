package processmanager

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// TestHandlerWritesYieldAtTheWriteGate: on SQLite, the deadline an event
// sets (or settles) is written behind a command's write that queued after
// it at the file's write gate: the handlers catch up with the log, as the
// read models do, and yield to the commands (sqldb.Yielding).
func TestHandlerWritesYieldAtTheWriteGate(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteFile(t))
	require.NoError(t, Migrate(ctx, db))
	tbl, err := newTable(db.DB)
	require.NoError(t, err)
	pm := &ProcessManager{table: tbl, cfg: Config{Clock: newFakeClock(t0)}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		poke: make(chan struct{}, 1)}

	// A transaction holds the gate while both writers queue.
	hold, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = hold.ExecContext(ctx, "UPDATE deadlines SET updated_at = 0 WHERE id = 'none'")
	require.NoError(t, err)

	var mu sync.Mutex
	var order []string
	done := func(who string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, who)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, pm.setDue(ctx, graceSubject(uuid.New(), uuid.New(), uuid.New()), t0.Add(time.Hour)))
		done("deadline")
	})
	require.Eventually(t, func() bool { _, y := db.WriteGateWaiting(); return y == 1 }, 10*time.Second, time.Millisecond,
		"the handler's write waits at the gate, yielding")
	wg.Go(func() {
		_, err := db.ExecContext(ctx, "UPDATE deadlines SET updated_at = 0 WHERE id = 'none'")
		assert.NoError(t, err)
		done("command")
	})
	require.Eventually(t, func() bool { fg, _ := db.WriteGateWaiting(); return fg == 1 }, 10*time.Second, time.Millisecond,
		"the command's write waits at the gate, after it")
	require.NoError(t, hold.Commit())
	wg.Wait()
	require.Equal(t, []string{"command", "deadline"}, order)
}
