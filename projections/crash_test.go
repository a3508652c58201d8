package projections_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// The crash tests run a Runner in a child process (this test binary, re-run
// as TestHelperProcess) on a database the parent shares, kill it, and check
// what the child left behind.
const (
	helperModeEnv = "PROJECTIONS_TEST_HELPER"
	helperDBEnv   = "PROJECTIONS_TEST_DB"
	helperAtEnv   = "PROJECTIONS_TEST_AT"

	// exitBetween: the child exits with code 3 inside its at-th batch
	// transaction of counts, after the projection wrote and before the
	// checkpoint update.
	modeExitBetween = "exit-between-write-and-checkpoint"
	exitBetweenCode = 3
	// failThenExit: the child's at-th batch of counts fails after the
	// projection wrote; once the runner has rolled back and logged the
	// failure, the child exits with code 4.
	modeFailThenExit = "fail-write-then-exit"
	failThenExitCode = 4
	// follow: the child runs until killed; it prints "ready" once caught up.
	modeFollow = "follow"

	helperBatch = 25
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("runs only as the child process of the crash tests")
	}
	os.Exit(helperMain(mode, os.Getenv(helperDBEnv), os.Getenv(helperAtEnv)))
}

func helperMain(mode, url, atArg string) int {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	st, err := sqlstore.New(ctx, db, sqlstore.WithRecheckInterval(10*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	at, _ := strconv.Atoi(atArg)
	var batches atomic.Int64
	handler := slog.Handler(slog.NewTextHandler(os.Stderr, nil))
	opts := []projections.Option{
		projections.WithBatchSize(helperBatch),
		projections.WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond),
	}
	switch mode {
	case modeExitBetween:
		opts = append(opts, projections.WithAfterApplyHook(func(name string, recs []eventlog.Record) error {
			if name == "counts" && batches.Add(1) == int64(at) {
				os.Exit(exitBetweenCode)
			}
			return nil
		}))
	case modeFailThenExit:
		opts = append(opts, projections.WithAfterApplyHook(func(name string, recs []eventlog.Record) error {
			if name == "counts" && batches.Add(1) == int64(at) {
				return errors.New("injected failure between write and checkpoint")
			}
			return nil
		}))
		// The runner logs the failure after the rollback: exit right there.
		handler = exitOnError{handler}
	case modeFollow:
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 10
	}
	opts = append(opts, projections.WithLogger(slog.New(handler)))
	r, err := projections.NewRunner(db.DB, st, []projections.Projection{newCounts(1), newWarm()}, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	go func() { _ = r.Run(ctx) }()
	if err := r.WaitCaughtUp(ctx); err != nil {
		return 10
	}
	fmt.Println("ready")
	select {} // until killed or a hook exits
}

// exitOnError ends the process when an error is logged.
type exitOnError struct{ slog.Handler }

func (h exitOnError) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelError {
		os.Exit(failThenExitCode)
	}
	return err
}

// helper is a running child process.
type helper struct {
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan struct{}
}

func startHelper(t *testing.T, mode, url string, at int) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDBEnv+"="+url, helperAtEnv+"="+strconv.Itoa(at))
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	h := &helper{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(h.ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child (%s) stderr:\n%s", mode, stderr.String())
		}
	})
	return h
}

// wait waits for the child to exit and returns its state.
func (h *helper) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	<-h.done
	_ = h.cmd.Wait()
	return h.cmd.ProcessState
}

// forCrashBackends runs f on the backends another process can share.
func forCrashBackends(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("sqlite-file", func(t *testing.T) { f(t, sqltest.SQLiteFile(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, sqltest.Postgres(t)) })
}

// checkRestartEqualsRebuild restarts the projections in this process, lets
// them catch up and checks their tables against the log, and against a
// rebuild from scratch.
func checkRestartEqualsRebuild(t *testing.T, e *env) {
	t.Helper()
	r, stop := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1), newWarm()})
	waitAt(t, r, e.head(t))
	stop()
	got := readSnapshot(t, e.db)
	require.Equal(t, expected(e.records(t), all), got)
	rebuildAll(t, e.db.DB, e.store)
	require.Equal(t, got, readSnapshot(t, e.db), "restarted tables equal a rebuild from scratch")
}

// checkConsistent checks that the tables of both projections hold exactly
// the events up to their checkpoints.
func checkConsistent(t *testing.T, e *env) {
	t.Helper()
	recs := e.records(t)
	// One snapshot for the checkpoints and the tables: a transaction the
	// killed child sent COMMIT for may still be committed by its
	// PostgreSQL backend while this reads.
	var opts *sql.TxOptions
	if !e.db.IsSQLite() {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
	}
	ctx := context.Background()
	require.NoError(t, e.db.RunInTx(ctx, opts, func(ctx context.Context, tx bun.Tx) error {
		c := checkpointOf(t, tx, "counts")
		require.Equal(t, countsPart(expected(recs, c.Position)), readCounts(t, tx), "counts at its checkpoint %d", c.Position)
		var n int
		require.NoError(t, tx.QueryRowContext(ctx, "SELECT count(*) FROM projection_checkpoints WHERE name = 'warm'").Scan(&n))
		if n == 0 {
			return nil // the child died before it prepared warm
		}
		w := checkpointOf(t, tx, "warm")
		var got []warmRow
		require.NoError(t, tx.NewRaw("SELECT position, stream, nth_in_stream, nth FROM warm_events ORDER BY position").Scan(ctx, &got))
		require.Equal(t, expected(recs, w.Position).Warm, got, "warm at its checkpoint %d", w.Position)
		return nil
	}))
}

func TestCrashBetweenWriteAndCheckpoint(t *testing.T) {
	forCrashBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 300, 10)
		const at = 5
		st := startHelper(t, modeExitBetween, url, at).wait(t)
		require.Equal(t, exitBetweenCode, st.ExitCode(), "the child died inside its batch transaction")

		require.Equal(t, uint64((at-1)*helperBatch), checkpointOf(t, e.db, "counts").Position,
			"the checkpoint of the interrupted batch was not written")
		checkConsistent(t, e) // and neither were its writes
		checkRestartEqualsRebuild(t, e)
	})
}

func TestFailedWriteThenExit(t *testing.T) {
	forCrashBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 300, 10)
		const at = 3
		st := startHelper(t, modeFailThenExit, url, at).wait(t)
		require.Equal(t, failThenExitCode, st.ExitCode(), "the child exited after the failed batch")

		require.Equal(t, uint64((at-1)*helperBatch), checkpointOf(t, e.db, "counts").Position)
		checkConsistent(t, e)
		checkRestartEqualsRebuild(t, e)
	})
}

func TestKilledAtRandomWhileAppending(t *testing.T) {
	forCrashBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 200, 10)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Appends at about 100 events a second, which the child, built with
		// the race detector on a busy 2-core machine, keeps up with.
		appended := make(chan error, 1)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					appended <- nil
					return
				case <-tick.C:
				}
				if err := appendEvents(ctx, e.store, 5, 10); err != nil && ctx.Err() == nil {
					appended <- err
					return
				}
			}
		}()

		var last uint64
		for round := range 3 {
			h := startHelper(t, modeFollow, url, 0)
			select {
			case <-h.ready:
			case <-time.After(waitFor):
				t.Fatal("the child did not catch up")
			}
			// The child has applied events of this round (the appender adds
			// some every 50 ms), so a kill at once still proves progress.
			require.Eventually(t, func() bool { return checkpointOf(t, e.db, "counts").Position > last }, waitFor, 5*time.Millisecond)
			// The random moment: somewhere in the child's stream of batches.
			time.Sleep(time.Duration(rand.Int64N(int64(300 * time.Millisecond))))
			require.NoError(t, h.cmd.Process.Signal(syscall.SIGKILL))
			st := h.wait(t)
			ws, ok := st.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL: %v", st)

			c := checkpointOf(t, e.db, "counts").Position
			t.Logf("round %d: killed at checkpoint %d, head %s", round, c, e.head(t))
			require.Greater(t, c, last, "the child applied events")
			last = c
			checkConsistent(t, e)
		}
		cancel()
		require.NoError(t, <-appended)
		checkRestartEqualsRebuild(t, e)
	})
}
