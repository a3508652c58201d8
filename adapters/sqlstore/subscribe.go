package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
)

// Subscribe implements eventlog.Store.
//
// It reads the log in batches from after and calls handle for each event;
// when it has caught up it sleeps until an append is reported (see the
// package documentation) or the re-check interval passes, and reads again.
// It returns ctx.Err() when ctx is done, handle's error unchanged when handle
// fails, ErrClosed (wrapped) when the Store is closed, and a wrapped database
// error when a read fails.
func (s *Store) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	pos := after
	timer := time.NewTimer(s.cfg.recheck)
	defer timer.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Take the wake-up channel before reading, so an append that commits
		// after the read has begun still wakes the wait below.
		wake := s.shared.wake.wait()
		if s.isClosed() {
			return fmt.Errorf("sqlstore: subscribe: %w", ErrClosed)
		}
		var recs []eventlog.Record
		fromTail := false
		if !s.cfg.noTail {
			recs, fromTail = s.shared.tail.read(pos.Commit, subscribeBatch)
		}
		var err error
		if !fromTail {
			recs, err = s.ReadAll(ctx, pos, subscribeBatch)
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("sqlstore: subscribe: %w", err)
		}
		for _, rec := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := handle(ctx, rec); err != nil {
				return err
			}
			pos = rec.Position
		}
		if len(recs) == subscribeBatch {
			continue
		}
		timer.Reset(s.cfg.recheck)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return fmt.Errorf("sqlstore: subscribe: %w", ErrClosed)
		case <-wake:
		case <-timer.C:
		}
	}
}

const (
	listenerAppName   = "accessledger-eventlog-listener"
	listenMinBackoff  = 100 * time.Millisecond
	listenMaxBackoff  = 10 * time.Second
	listenPingTimeout = 5 * time.Second
)

// startListener names the schema's NOTIFY channel, opens the LISTEN
// connection and starts the goroutine that keeps it open.
func (s *Store) startListener(ctx context.Context) error {
	var database string
	var schema sql.NullString
	if err := s.db.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&database, &schema); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	if !schema.Valid {
		return errors.New("no current schema (does the search_path schema exist?)")
	}
	s.channel = notifyChannel(database, schema.String)

	cfg, err := pgx.ParseConfig(s.db.DSN())
	if err != nil {
		return fmt.Errorf("listener config: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = listenerAppName
	}
	conn, err := s.connectListener(ctx, cfg)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopListen = cancel
	s.listenDone = make(chan struct{})
	go s.listen(lctx, cfg, conn)
	return nil
}

// notifyChannel names the NOTIFY channel of one schema: NOTIFY is
// database-wide, and a store must not wake on another schema's appends.
// Channel names are identifiers (at most 63 bytes), hence the hash.
func notifyChannel(database, schema string) string {
	sum := sha256.Sum256([]byte(database + "\x00" + schema))
	return "eventlog_" + hex.EncodeToString(sum[:12])
}

func (s *Store) connectListener(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listener connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("listen on %s: %w", s.channel, err)
	}
	return conn, nil
}

// listen owns the LISTEN connection: it turns notifications into wake-ups
// and reconnects with exponential backoff when the connection fails. After
// a reconnect it wakes every subscriber, since notifications sent while it
// was away are lost.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn) {
	defer close(s.listenDone)
	waits := retry.Exponential(listenMinBackoff, listenMaxBackoff)
	wait := waits.Next()
	for {
		if conn != nil {
			err := s.relay(ctx, conn)
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
			conn = nil
			if ctx.Err() != nil {
				return
			}
			s.cfg.logger.WarnContext(ctx, "sqlstore: LISTEN connection lost, reconnecting",
				slog.String("database", s.db.String()), slog.Any("error", err))
		}
		if retry.Sleep(ctx, wait) != nil {
			return
		}
		c, err := s.connectListener(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = waits.Next()
			s.cfg.logger.WarnContext(ctx, "sqlstore: LISTEN reconnect failed",
				slog.String("database", s.db.String()), slog.Any("error", err), slog.Duration("retry_in", wait))
			continue
		}
		waits.Reset()
		conn, wait = c, waits.Next()
		s.cfg.logger.InfoContext(ctx, "sqlstore: LISTEN connection restored", slog.String("database", s.db.String()))
		s.shared.wake.broadcast()
	}
}

// relay waits for notifications and wakes subscribers for each one. When
// the connection has been silent for the health interval it pings it, so a
// connection that died without a word is noticed. It returns the error that
// ended the connection.
func (s *Store) relay(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.health)
		_, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			s.shared.wake.broadcast()
		case ctx.Err() != nil:
			return ctx.Err()
		case idle && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}
