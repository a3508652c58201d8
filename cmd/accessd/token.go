package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

// tokenConfig holds the flags of accessd token.
type tokenConfig struct {
	dataDir  string
	secret   string
	role     string
	sub      string
	ttl      time.Duration
	issuer   string
	audience string
}

func (c *tokenConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "./data", "data directory holding the signing secret "+auth.SecretFileName+" (created with the secret if missing)")
	fs.StringVar(&c.secret, "secret-file", "", "file holding the HS256 secret, hex (default: "+auth.SecretFileName+" in --data-dir); must match the server's")
	fs.StringVar(&c.role, "role", "", "the caller's role: worker, manager, portals_team, auditor, service or dpo (required)")
	fs.StringVar(&c.sub, "sub", "", "the caller's id, the token's subject (required)")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, fmt.Sprintf("how long the token is valid: at least 1s, at most %s (%s for the service role)",
		auth.MaxHumanTTL, auth.MaxServiceTTL))
	fs.StringVar(&c.issuer, "issuer", "", "iss claim (only if the server checks one)")
	fs.StringVar(&c.audience, "audience", "", "aud claim (only if the server checks one)")
}

// runToken prints a bearer token signed with the secret of the data
// directory, creating the secret on first use (so it works before or after
// the first serve). Only the token is printed, on one line, so that
// TOKEN=$(accessd token ...) works.
func runToken(_ context.Context, args []string, env *environment) error {
	var cfg tokenConfig
	fs := newFlagSet("token", env.stderr)
	cfg.register(fs)
	if err := parseFlags(fs, args, env.lookup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if strings.TrimSpace(cfg.dataDir) == "" {
		return fmt.Errorf("%w: --data-dir is empty", errUsage)
	}
	if cfg.role == "" {
		return fmt.Errorf("%w: --role is required (worker, manager, portals_team, auditor, service or dpo)", errUsage)
	}
	role, err := domain.ParseRole(cfg.role)
	if err != nil {
		return fmt.Errorf("%w: --role %q: want worker, manager, portals_team, auditor, service or dpo", errUsage, cfg.role)
	}
	if cfg.sub == "" {
		return fmt.Errorf("%w: --sub is required (the caller's id)", errUsage)
	}
	if err := auth.CheckSubject(cfg.sub); err != nil {
		return fmt.Errorf("%w: --sub: %v", errUsage, err)
	}
	if cfg.ttl < time.Second {
		return fmt.Errorf("%w: --ttl %s: must be at least 1s", errUsage, cfg.ttl)
	}
	if max := auth.MaxTTL(role); cfg.ttl > max {
		return fmt.Errorf("%w: --ttl %s: a %s token lives at most %s (people's roles %s, the service %s)",
			errUsage, cfg.ttl, role, max, auth.MaxHumanTTL, auth.MaxServiceTTL)
	}
	secret, err := loadSecret(cfg.dataDir, cfg.secret)
	if err != nil {
		return err
	}
	tok, err := auth.Mint(secret, auth.Claims{
		Subject: cfg.sub, Role: role, TTL: cfg.ttl, Issuer: cfg.issuer, Audience: cfg.audience,
	}, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.stdout, tok)
	return err
}

// loadSecret returns the HS256 secret: from file when given, else the data
// directory's, created on first use.
func loadSecret(dataDir, file string) ([]byte, error) {
	if file != "" {
		return auth.LoadSecretFile(file)
	}
	return auth.LoadOrCreateSecret(dataDir)
}
