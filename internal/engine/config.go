package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/projections/ledger"
)

// ErrUsage marks an error in the engine's configuration that the operator
// made (a missing or contradictory setting): accessd prints it with the
// usage and exits 2.
var ErrUsage = errors.New("usage")

// Config names the engine's stores and files.
type Config struct {
	// DataDir holds the embedded default's files: the SQLite database, the
	// ledger's key and checkpoints, the signing secret.
	DataDir string
	// EventStore is the event store's URL: postgres://..., sqlite:PATH,
	// esdb://...; "" is the SQLite file DefaultDBName in DataDir.
	EventStore string
	// ReadStore is the read models' database URL; "" is the event store's
	// own database (required with EventStoreDB).
	ReadStore string
	// LedgerKey and CheckpointDir: the ledger's signing key and where its
	// checkpoints are published ("" = in DataDir).
	LedgerKey     string
	CheckpointDir string
	// MasterKey is the file of the master key that wraps the data
	// subjects' keys ("" = keystore.MasterKeyFileName in DataDir).
	MasterKey string
}

// DefaultDBName is the SQLite file of the embedded default, in the data
// directory.
const DefaultDBName = "accessledger.db"

// LedgerKeyPath is the ledger's signing key file.
func (c *Config) LedgerKeyPath() string {
	if c.LedgerKey != "" {
		return c.LedgerKey
	}
	return filepath.Join(c.DataDir, ledger.KeyFileName)
}

// MasterKeyPath is the master key's file.
func (c *Config) MasterKeyPath() string {
	if c.MasterKey != "" {
		return c.MasterKey
	}
	return filepath.Join(c.DataDir, keystore.MasterKeyFileName)
}

// CheckpointPath is the checkpoint directory.
func (c *Config) CheckpointPath() string {
	if c.CheckpointDir != "" {
		return c.CheckpointDir
	}
	return filepath.Join(c.DataDir, "checkpoints")
}

// EventStoreURL returns the event store to open; for the embedded default
// it creates the data directory (mode 0700: it holds children's records).
func (c *Config) EventStoreURL() (string, error) {
	if c.EventStore != "" {
		return c.EventStore, nil
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	return "sqlite:" + filepath.Join(c.DataDir, DefaultDBName), nil
}

// CheckPrivate refuses a data directory that group or others can access:
// it holds the SQLite files, the signing secret and keys. It creates the
// directory (mode 0700) when it is missing.
func (c *Config) CheckPrivate() error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	fi, err := os.Stat(c.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return fmt.Errorf("%w: data directory %s has mode %#o: group or others can access the personal data in it; run chmod 700 %s",
			ErrUsage, c.DataDir, perm, c.DataDir)
	}
	return nil
}
