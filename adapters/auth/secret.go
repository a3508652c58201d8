package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// SecretFileName is the name of the signing secret's file in the data
// directory.
const SecretFileName = "jwt-secret"

// maxSecretFileBytes bounds what the loaders read.
const maxSecretFileBytes = 4 << 10

// LoadOrCreateSecret returns the token signing secret of the data directory
// dataDir: the file <dataDir>/jwt-secret, created on first use.
//
// A new file holds MinSecretBytes bytes from crypto/rand, hex-encoded, and a
// newline; it has mode 0600 (dataDir is created with mode 0700 if missing).
// Creation is atomic and exclusive: the secret is written and synced to a
// temporary file (created O_EXCL, mode 0600) which is then hard-linked to
// the final name, which fails if the name exists. So the file is never seen
// half-written, and when several processes start at once exactly one
// secret wins: every loser reads the winner's file.
//
// An existing file is read as LoadSecretFile reads it: it is refused when
// group or others may read or write it (chmod 600 it), when it is not a
// regular file, or when it holds fewer than MinSecretBytes bytes of hex.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	if dataDir == "" {
		return nil, errors.New("auth: secret: no data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: secret: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, SecretFileName)
	secret, err := LoadSecretFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := createSecret(dataDir, path); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process created it first: use its secret.
	}
	return LoadSecretFile(path)
}

// createSecret writes a new secret to path, failing with an error wrapping
// fs.ErrExist when path exists.
func createSecret(dir, path string) (err error) {
	raw := make([]byte, MinSecretBytes)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("auth: secret: random bytes: %w", err)
	}
	content := make([]byte, hex.EncodedLen(len(raw)), hex.EncodedLen(len(raw))+1)
	hex.Encode(content, raw)
	content = append(content, '\n')

	tmp, err := os.CreateTemp(dir, "."+SecretFileName+".*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return fmt.Errorf("auth: secret: create: %w", err)
	}
	defer func() {
		if rerr := os.Remove(tmp.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("auth: secret: remove temporary file: %w", rerr))
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		_ = tmp.Close()
		return fmt.Errorf("auth: secret: chmod: %w", err)
	}
	if _, err := tmp.Write(content); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("auth: secret: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("auth: secret: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth: secret: close: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("auth: secret: create %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes the new directory entry durable where the platform allows
// (best effort: the secret is recreated if lost before any token used it).
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// LoadSecretFile reads a signing secret from path: hex (as written by
// LoadOrCreateSecret, or by `openssl rand -hex 32`), surrounding whitespace
// ignored, decoding to at least MinSecretBytes bytes. The file must be a
// regular file that only its owner may read or write (mode 0600 or
// stricter; not checked on Windows). A missing file gives an error wrapping
// fs.ErrNotExist.
func LoadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: secret file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("auth: secret file %s has mode %#o: group or others can access it; run chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: secret: read %s: %w", path, err)
	}
	if len(data) > maxSecretFileBytes {
		return nil, fmt.Errorf("auth: secret file %s is larger than %d bytes", path, maxSecretFileBytes)
	}
	text := bytes.TrimSpace(data)
	secret := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(secret, text); err != nil {
		return nil, fmt.Errorf("auth: secret file %s does not hold hex (want %d random bytes hex-encoded, e.g. from openssl rand -hex %d)",
			path, MinSecretBytes, MinSecretBytes)
	}
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: secret file %s holds %d bytes of secret, need at least %d (delete it to have a new one created, or write %d random bytes hex-encoded)",
			path, len(secret), MinSecretBytes, MinSecretBytes)
	}
	return secret, nil
}
