// Command accessd runs the accessledger engine and its maintenance tasks.
//
//	accessd serve    [--data-dir ./data] [--event-store URL]  run the engine
//	accessd migrate  [--data-dir ./data] [--event-store URL]  apply schema migrations
//	accessd status   [--data-dir ./data] [--event-store URL]  report the store
//	accessd rebuild  [--projection NAME]                      rebuild read models
//	accessd audit verify [--anchor SEQ:HASH]                  verify the audit trail
//	accessd ledger verify [--checkpoint FILE]...              verify the event log against signed checkpoints
//	accessd reseal --to-data-dir DIR                          copy the log into a new deployment, personal data sealed
//	accessd import --file FILE [--dry-run]                    import records of older systems with their real dates (R24)
//
// Every flag also has an environment variable: ACCESSLEDGER_ and the flag's
// name in upper case with _ for - (ACCESSLEDGER_DATA_DIR). A flag on the
// command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/accessledger/accessledger/internal/engine"
)

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, osLookupEnv)
	stop()
	os.Exit(code)
}

// command is one subcommand of accessd.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env *environment) error
}

// environment is what a subcommand reads and writes besides its flags.
type environment struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
}

func subcommands() []command {
	return []command{
		{"serve", "run the engine (migrates the store first)", runServe},
		{"migrate", "apply the schema migrations and exit", runMigrate},
		{"status", "report the event store: its head position and event count", runStatus},
		{"rebuild", "rebuild read models from the event log into fresh tables, then swap them in", runRebuild},
		{"token", "print a bearer token signed with the data directory's secret (created if missing)", runToken},
		{"console-link", "print a one-time sign-in link to the auditor's console (/console) of the engine on the data directory", runConsoleLink},
		{"audit", "audit verify: bring the audit trail up to date and recompute its hash chain", runAudit},
		{"ledger", "ledger verify: recompute the Merkle tree of the event log and check it against the signed checkpoints", runLedger},
		{"reseal", "copy the event log into a new deployment (--to-data-dir) with its personal data sealed, and verify both", runReseal},
		{"import", "import children, accounts, placements and grants of an older system with their real dates (--file, docs/import.md)", runImport},
		{"generate", "write a generated data set (county, nation, small) into the event store", runGenerate},
		{"bench", "measure the engine on a generated data set: print a table, write JSON", runBench},
		{"load", "measure HTTP checks of a running accessd serve (--url) from this process: print a table, write JSON", runLoad},
	}
}

// errUsage marks an error the user made on the command line; run prints it
// with the usage and exits 2.
var errUsage = engine.ErrUsage

// run executes accessd with args (without the program name) and returns the
// process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	env := &environment{stdout: stdout, stderr: stderr, lookup: lookup}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range subcommands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], env)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "accessd %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "accessd %s: %v\n", c.name, err)
			return exitError
		}
	}
	fmt.Fprintf(stderr, "accessd: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "accessd: the accessledger engine")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: accessd COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run accessd COMMAND -h for a command's flags. Every flag is also read from")
	fmt.Fprintln(w, "ACCESSLEDGER_<FLAG> (upper case, _ for -); the command line wins.")
}
