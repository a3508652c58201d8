package engine_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
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
	for _, kind := range []bus.Kind{bus.KindNATS, bus.KindPostgres} {
		require.Equal(t, pub, engine.RelayPublisher(kind, pub, pm), kind)
	}
}
