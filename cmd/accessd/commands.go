package main

import (
	"context"
	"fmt"
	"time"
)

func runMigrate(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("migrate", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	log := cfg.logger(env)
	st, err := openStore(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := st.status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "migrated %s: %d events, head %s\n", s.Store, s.Events, s.Head)
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
	fmt.Fprintf(env.stdout, "store:  %s\nevents: %d\nhead:   %s\n", s.Store, s.Events, s.Head)
	return nil
}

// runServe runs the engine until ctx ends (SIGINT or SIGTERM).
func runServe(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("serve", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	log := cfg.logger(env)
	start := time.Now()
	e, err := openEngine(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()
	s, err := e.store.status(ctx)
	if err != nil {
		return err
	}
	log.Info("event store open", "store", s.Store, "events", s.Events, "head", s.Head.String())
	err = e.run(ctx, func() {
		log.Info("ready: read models and access index caught up", "start_to_ready", time.Since(start).Round(time.Millisecond).String())
		e.logStatus()
	})
	log.Info("shutting down")
	return err
}
