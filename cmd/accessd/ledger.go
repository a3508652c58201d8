package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/ledger"
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// errLedgerBroken ends accessd with exit code 1 after a report that already
// said what is wrong.
var errLedgerBroken = errors.New("ledger verification failed")

// runLedger runs the ledger subcommands: verify.
func runLedger(ctx context.Context, args []string, env *environment) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: want accessd ledger verify [flags]", errUsage)
	}
	var cfg storeConfig
	var files multiFlag
	var publicKey string
	fs := newFlagSet("ledger verify", env.stderr)
	cfg.register(fs)
	fs.Var(&files, "checkpoint", "a checkpoint FILE kept outside the engine (repeatable): the log must be consistent with it")
	fs.StringVar(&publicKey, "public-key", "", "file holding the ledger's public key (what GET /v1/ledger/public-key answers); "+
		"default: derived from --ledger-key")
	if err := cfg.parse(fs, args[1:], env); err != nil {
		return err
	}
	log := cfg.logger(env)
	rep, err := verifyLedger(ctx, &cfg, files, publicKey, log)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "FAILED: %v\n", err)
		return errLedgerBroken
	}
	fmt.Fprintln(env.stdout, rep.Summary())
	if !rep.OK {
		return errLedgerBroken
	}
	return nil
}

// verifyLedger opens the stores and verifies the log against the stored
// tree, the published checkpoints (the checkpoint directory and the
// database's table) and the checkpoint files given.
func verifyLedger(ctx context.Context, cfg *storeConfig, files []string, publicKey string, log *slog.Logger) (*ledger.Report, error) {
	verifier, err := engine.LedgerVerifier(&cfg.Config, publicKey)
	if err != nil {
		return nil, err
	}
	st, err := engine.OpenStores(ctx, &cfg.Config, log)
	if err != nil {
		return nil, fmt.Errorf("the store could not be opened: %w", err)
	}
	defer st.Close()
	return engine.VerifyStores(ctx, &cfg.Config, st, files, verifier)
}
