package engine

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/sqldb"
)

// KeysDB is keysDB for the tests.
func KeysDB(e *Engine) *sqldb.DB { return e.keysDB() }

// DeadlinesDB is deadlinesDB for the tests, on a bus of kind.
func DeadlinesDB(kind bus.Kind, e *Engine) *sqldb.DB { return deadlinesDB(bus.Config{Kind: kind}, e) }

// RelayPublisher is relayPublisher for the tests, on a bus of kind.
func RelayPublisher(kind bus.Kind, pub message.Publisher, pm *processmanager.ProcessManager) message.Publisher {
	return relayPublisher(bus.Config{Kind: kind}, pub, pm)
}

// RunRelay runs m's outbox relay alone (Messaging.Run starts it only once
// the process manager is subscribed), until ctx ends.
func RunRelay(ctx context.Context, m *Messaging) error { return m.relay.Run(ctx) }
