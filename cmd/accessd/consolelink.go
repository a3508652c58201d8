package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/domain"
)

// consoleLinkConfig holds the flags of accessd console-link.
type consoleLinkConfig struct {
	dataDir, secret, role, sub, baseURL string
	ttl                                 time.Duration
}

func (c *consoleLinkConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "./data", "data directory of the engine (its signing secret "+auth.SecretFileName+")")
	fs.StringVar(&c.secret, "secret-file", "", "file holding the engine's HS256 secret, hex (default: "+auth.SecretFileName+" in --data-dir); must match the server's")
	fs.StringVar(&c.role, "role", "auditor", "role of the person signing in: auditor, manager or dpo")
	fs.StringVar(&c.sub, "sub", "local-auditor", "the person's actor id, as the security log names them")
	fs.StringVar(&c.baseURL, "base-url", "http://127.0.0.1:8080", "the console's origin, as the browser reaches the engine")
	fs.DurationVar(&c.ttl, "ttl", console.DefaultLinkTTL, "how long the link may be used (at most 1h); it works once")
}

// runConsoleLink prints a one-time sign-in link to the console of the
// engine running on the data directory.
func runConsoleLink(_ context.Context, args []string, env *environment) error {
	var cfg consoleLinkConfig
	fs := newFlagSet("console-link", env.stderr)
	cfg.register(fs)
	if err := parseFlags(fs, args, env.lookup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	role, err := domain.ParseRole(cfg.role)
	if err != nil || !console.Allowed(role) {
		return fmt.Errorf("%w: --role %q: want auditor, manager or dpo", errUsage, cfg.role)
	}
	if err := auth.CheckSubject(cfg.sub); err != nil {
		return fmt.Errorf("%w: --sub: %v", errUsage, err)
	}
	if strings.TrimSpace(cfg.dataDir) == "" && cfg.secret == "" {
		return fmt.Errorf("%w: --data-dir is empty", errUsage)
	}
	secret, err := loadSecret(cfg.dataDir, cfg.secret)
	if err != nil {
		return err
	}
	link, err := console.MintLink(secret, cfg.baseURL, role, cfg.sub, cfg.ttl, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	fmt.Fprintln(env.stdout, link.URL)
	fmt.Fprintf(env.stderr, "accessd: a one-time sign-in link for %s (%s), valid until %s\n", cfg.sub, role, link.Expires.Format(time.RFC3339))
	return nil
}
