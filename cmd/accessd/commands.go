package main

import (
	"context"
	"fmt"
)

func runMigrate(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("migrate", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	log := cfg.logger(env)
	st, err := openStores(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := st.events.status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "migrated %s: %s events, head %s\n", s.Store, eventsText(s.Events), s.Head)
	if st.ownRead {
		fmt.Fprintf(env.stdout, "migrated read store %s\n", st.read)
	}
	return nil
}

func runStatus(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("status", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	st, err := openStore(ctx, &cfg, cfg.logger(env))
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := st.status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "store:  %s\nevents: %s\nhead:   %s\n", s.Store, eventsText(s.Events), s.Head)
	return nil
}

// runServe runs the engine until ctx ends (SIGINT or SIGTERM): the read
// models, the access index and the HTTP API.
func runServe(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var sc serveConfig
	fs := newFlagSet("serve", env.stderr)
	cfg.register(fs)
	sc.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if err := sc.check(); err != nil {
		return err
	}
	log := cfg.logger(env)
	return serve(ctx, &cfg, &sc, log, env)
}
