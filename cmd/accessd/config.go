package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/accessledger/accessledger/projections/ledger"
)

// storeConfig holds the flags every command that opens the store shares.
type storeConfig struct {
	dataDir    string
	eventStore string
	readStore  string
	logLevel   string
	logFormat  string
	// ledgerKey and checkpointDir: the ledger's signing key and where its
	// checkpoints are published ("" = in the data directory).
	ledgerKey     string
	checkpointDir string
}

// defaultDBName is the SQLite file of the embedded default, in the data
// directory.
const defaultDBName = "accessledger.db"

func (c *storeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "./data", "directory of the embedded default's files (created if missing)")
	fs.StringVar(&c.eventStore, "event-store", "", "event store URL: postgres://..., sqlite:PATH, esdb://HOST:2113?tls=false, esdb+discover://... "+
		"(default: sqlite file "+defaultDBName+" in --data-dir)")
	fs.StringVar(&c.readStore, "read-store", "", "read models' database URL: postgres://... or sqlite:PATH "+
		"(default: the event store's database; required with EventStoreDB)")
	fs.StringVar(&c.ledgerKey, "ledger-key", "", "the ledger's Ed25519 signing key, in the signed-note format (default: "+ledger.KeyFileName+
		" in --data-dir, created on first start, mode 0600); keep a copy and mount the same file on every replica")
	fs.StringVar(&c.checkpointDir, "checkpoint-dir", "", "directory the signed checkpoints of the ledger are written to, one file each, never overwritten "+
		"(default: checkpoints in --data-dir); copy it off the machine (docs/ledger.md)")
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
	if strings.TrimSpace(c.dataDir) == "" {
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

// ledgerKeyPath is the ledger's signing key file.
func (c *storeConfig) ledgerKeyPath() string {
	if c.ledgerKey != "" {
		return c.ledgerKey
	}
	return filepath.Join(c.dataDir, ledger.KeyFileName)
}

// checkpointPath is the checkpoint directory.
func (c *storeConfig) checkpointPath() string {
	if c.checkpointDir != "" {
		return c.checkpointDir
	}
	return filepath.Join(c.dataDir, "checkpoints")
}

// eventStoreURL returns the event store to open; for the embedded default it
// creates the data directory (mode 0700: it holds children's records).
func (c *storeConfig) eventStoreURL() (string, error) {
	if c.eventStore != "" {
		return c.eventStore, nil
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	return "sqlite:" + filepath.Join(c.dataDir, defaultDBName), nil
}
