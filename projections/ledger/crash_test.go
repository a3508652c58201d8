package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/syncbuf"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// The crash test runs the tree's projection and the publisher in a child
// process (this test binary, re-run as TestLedgerHelperProcess) while the
// parent appends, kills it with SIGKILL at random moments, and checks that
// what it left behind (tree tables, checkpoint rows and files) is
// consistent with the log and with a rebuild from scratch.
const (
	crashDBEnv  = "LEDGER_CRASH_DB"
	crashDirEnv = "LEDGER_CRASH_DIR"
)

func TestLedgerHelperProcess(t *testing.T) {
	url := os.Getenv(crashDBEnv)
	if url == "" {
		t.Skip("runs only as the child process of TestCrashWhileBuildingAndPublishing")
	}
	os.Exit(crashChild(url, os.Getenv(crashDirEnv)))
}

func crashChild(url, dir string) int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 10 }
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		return fail(err)
	}
	st, err := sqlstore.New(ctx, db, sqlstore.WithRecheckInterval(5*time.Millisecond))
	if err != nil {
		return fail(err)
	}
	key, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	if err != nil {
		return fail(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	l, err := ledger.NewLedger(ledger.Config{DB: db, Key: key, Dir: filepath.Join(dir, "checkpoints"), Every: 1, Logger: log})
	if err != nil {
		return fail(err)
	}
	var opts []ledger.Option
	cps, _, err := l.Published(ctx)
	if err != nil {
		return fail(err)
	}
	if len(cps) > 0 {
		opts = append(opts, ledger.WithCheckpoint(cps[len(cps)-1].Checkpoint))
	}
	r, err := projections.NewRunner(db.DB, st, []projections.Projection{ledger.New(opts...)},
		projections.WithBatchSize(7), projections.WithLogger(log))
	if err != nil {
		return fail(err)
	}
	go func() { _ = r.Run(ctx) }()
	if err := r.WaitCaughtUp(ctx); err != nil {
		return fail(err)
	}
	if _, err := l.Guard(ctx, st, ledger.VerifyOptions{}); err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	for {
		_, _, err := l.Publish(ctx)
		if err != nil && !isEmpty(err) {
			return fail(err)
		}
		if err == nil {
			fmt.Println("published")
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	}
}

// isEmpty: nothing to sign yet.
func isEmpty(err error) bool { return err != nil && err.Error() == "ledger: empty tree" }

func TestCrashWhileBuildingAndPublishing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	for name, url := range map[string]func(testing.TB) string{"sqlite-file": sqltest.SQLiteFile, "postgres": sqltest.Postgres} {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			e := newEnv(t, sqltest.Open(t, u))
			dir := t.TempDir()
			for round := 0; round < 6; round++ {
				child, published := startCrashChild(t, u, dir)
				stop := make(chan struct{})
				appended := make(chan int)
				go func() {
					n := 0
					for {
						select {
						case <-stop:
							appended <- n
							return
						default:
						}
						ev := eventlog.EventData{ID: uuid.New(), Type: "crash.test.v1", Data: []byte(`{"n":1}`),
							Meta: eventlog.Meta{ActorID: "worker", ActorRole: "worker", EffectiveAt: time.Now()}}
						if _, err := e.store.Append(context.Background(), fmt.Sprintf("s-%d", n%5), eventlog.Any, []eventlog.EventData{ev}); err == nil {
							n++
						}
					}
				}()
				if round%2 == 0 {
					// Every other round kills only after a checkpoint was
					// published, so the end has some to verify however
					// slowly the child's writes get the lock beside the
					// appends (a loaded CI machine, the race detector).
					select {
					case <-published:
					case <-time.After(60 * time.Second):
						t.Fatal("the child published no checkpoint in 60 s")
					}
				}
				time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
				require.NoError(t, child.Process.Signal(syscall.SIGKILL))
				_ = child.Wait()
				close(stop)
				require.Positive(t, <-appended)
			}

			// Restarted: the tree catches up and everything agrees.
			ctx := context.Background()
			e.project(t)
			key, err := ledger.LoadKey(filepath.Join(dir, ledger.KeyFileName))
			require.NoError(t, err)
			cps, problems, err := ledger.LoadPublished(ctx, e.db, filepath.Join(dir, "checkpoints"), key.Verifier, 0)
			require.NoError(t, err)
			require.Empty(t, problems, "every checkpoint file and row opens: a kill never leaves a partial one under a checkpoint's name")
			require.NotEmpty(t, cps)
			rep, err := ledger.Verify(ctx, e.store, ledger.NewTree(e.db), ledger.VerifyOptions{Checkpoints: cps})
			require.NoError(t, err)
			require.True(t, rep.OK, rep.Summary())
			root := rep.Root
			require.NoError(t, projections.Rebuild(ctx, e.db.DB, e.store, ledger.New(ledger.WithCheckpoint(cps[len(cps)-1].Checkpoint)), nil))
			rebuilt, err := ledger.NewTree(e.db).Root(ctx, rep.Events)
			require.NoError(t, err)
			require.Equal(t, root, rebuilt, "the tree left by the crashes equals a rebuild from scratch")
		})
	}
}

// startCrashChild starts the child and waits until it is ready; the
// channel it returns is closed when the child has published a checkpoint.
func startCrashChild(t *testing.T, url, dir string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+url, crashDirEnv+"="+dir)
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	ready, published := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var once sync.Once
		for sc.Scan() {
			switch sc.Text() {
			case "ready":
				close(ready)
			case "published":
				once.Do(func() { close(published) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the child did not get ready:\n%s", stderr.String())
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, published
}

// syncBuf is a bytes.Buffer safe for concurrent writes.
type syncBuf = syncbuf.Buffer
