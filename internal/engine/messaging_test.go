package engine_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
)

// TestTheRelayPublishesThroughTheProcessManagerOnTheInProcessBus: on the
// in-process bus the relay's publishes are confirmed by the process
// manager, so that one it did not handle (here: it is not running) is
// refused, where gochannel alone reports nothing; a bus that stores its
// messages is used as it is.
func TestTheRelayPublishesThroughTheProcessManagerOnTheInProcessBus(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	e, err := engine.Open(ctx, &engine.Config{DataDir: dir}, engine.Options{Instance: "t"}, log)
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	cmds, err := commands.New(e.Stores.Log, securitylog.New(e.ReadDB), commands.Config{Logger: log})
	require.NoError(t, err)
	cfg, err := engine.BusConfig("gochannel", log)
	require.NoError(t, err)
	pub, sub, closeBus, err := bus.Open(ctx, cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, closeBus()) }()
	pm, err := processmanager.New(processmanager.Config{DB: e.UnsyncedDB, Publisher: pub, Subscriber: sub, Commands: cmds, Logger: log})
	require.NoError(t, err)

	msg := message.NewMessage(uuid.NewString(), []byte("{}"))
	require.NoError(t, pub.Publish(bus.TopicEvents, msg), "gochannel drops what nobody receives, silently")
	require.ErrorIs(t, engine.RelayPublisher(bus.KindGoChannel, pub, pm).Publish(bus.TopicEvents, msg), processmanager.ErrNotHandled)
	require.ErrorIs(t, engine.RelayPublisher("", pub, pm).Publish(bus.TopicEvents, msg), processmanager.ErrNotHandled, "bus.Open's default kind")
	for _, kind := range []bus.Kind{bus.KindNATS, bus.KindPostgres} {
		require.Equal(t, pub, engine.RelayPublisher(kind, pub, pm), kind)
	}

	// The engine's messaging: its relay, run without the process manager
	// (which is what a process manager that stopped on its own leaves),
	// publishes nothing as delivered and keeps its checkpoint.
	m, err := engine.OpenMessaging(ctx, cfg, e, cmds, nil, "t", log)
	require.NoError(t, err)
	defer func() { require.NoError(t, m.Close()) }()
	_, err = cmds.RegisterChild(ctx, commands.Meta{Actor: domain.Actor{ID: "worker-1", Role: domain.RoleWorker}},
		commands.RegisterChild{Reference: "C-0001"})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.RunRelay(rctx, m) }()
	require.Eventually(t, func() bool {
		st, err := m.RelayStatus(ctx)
		return err == nil && st.Retries > 0
	}, 20*time.Second, 10*time.Millisecond, "the relay's publish was refused")
	cancel()
	if err := <-done; err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	st, err := m.RelayStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, eventlog.Start, st.Position, "nothing counted as published")
	require.Equal(t, eventlog.Start, st.Checkpoint)
	require.Contains(t, st.LastError, processmanager.ErrNotHandled.Error())
}
