package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/ledger"
)

// storeConfig holds the flags every command that opens the store shares.
type storeConfig struct {
	engine.Config
	logLevel  string
	logFormat string
}

func (c *storeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded default's files (created if missing)")
	fs.StringVar(&c.EventStore, "event-store", "", "event store URL: postgres://..., sqlite:PATH, esdb://HOST:2113?tls=false, esdb+discover://... "+
		"(default: sqlite file "+engine.DefaultDBName+" in --data-dir)")
	fs.StringVar(&c.ReadStore, "read-store", "", "read models' database URL: postgres://... or sqlite:PATH "+
		"(default: the event store's database; required with EventStoreDB)")
	fs.StringVar(&c.LedgerKey, "ledger-key", "", "the ledger's Ed25519 signing key, in the signed-note format (default: "+ledger.KeyFileName+
		" in --data-dir, created on first start, mode 0600); keep a copy and mount the same file on every replica")
	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", "", "directory the signed checkpoints of the ledger are written to, one file each, never overwritten "+
		"(default: checkpoints in --data-dir); copy it off the machine (docs/ledger.md)")
	fs.StringVar(&c.MasterKey, "master-key", "", "the master key that wraps the data subjects' keys (R22), 32 bytes in hex (default: "+keystore.MasterKeyFileName+
		" in --data-dir, created on the first start, mode 0600); mount it from your secret store and give every replica the same file")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
}

// parse parses args into c, reading unset flags from the environment, and
// checks the values.
func (c *storeConfig) parse(fs *flag.FlagSet, args []string, env *environment) error {
	if err := parseFlags(fs, args, env.lookup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return fmt.Errorf("%w: --data-dir is empty", errUsage)
	}
	if _, err := c.level(); err != nil {
		return err
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", errUsage, c.logFormat)
	}
	return nil
}

func (c *storeConfig) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.logLevel)); err != nil {
		return 0, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, c.logLevel)
	}
	return l, nil
}

// logger returns the logger the flags ask for, writing to the environment's
// standard error.
func (c *storeConfig) logger(env *environment) *slog.Logger {
	l, _ := c.level()
	opts := &slog.HandlerOptions{Level: l}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(env.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(env.stderr, opts))
}
