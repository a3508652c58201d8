package bus

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/projections/ledger"
)

// MessageCheckpoint names a ledger.checkpoint message on TopicLedger
// (metadata MetaName). Its payload is the signed note exactly as the
// engine wrote it to its checkpoint directory; metadata MetaTreeSize and
// MetaRoot repeat the tree size and root hash for routing.
const MessageCheckpoint = "ledger.checkpoint"

// Metadata keys of ledger.checkpoint messages.
const (
	MetaTreeSize = "tree_size"
	MetaRoot     = "root"
)

// checkpointNamespace is the UUID namespace of ledger.checkpoint message
// ids.
var checkpointNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:accessledger:ledger.checkpoint"))

// CheckpointUUID is the message UUID of the checkpoint of origin at size:
// name-based, so that a checkpoint published twice carries the same UUID
// (JetStream drops the second within its duplicate window).
func CheckpointUUID(origin string, size int64) uuid.UUID {
	return uuid.NewSHA1(checkpointNamespace, []byte(origin+"/"+strconv.FormatInt(size, 10)))
}

// EncodeCheckpoint returns the ledger.checkpoint message of a signed
// checkpoint.
func EncodeCheckpoint(cp ledger.Checkpoint, signed []byte) (*message.Message, error) {
	if cp.Origin == "" || cp.Size < 0 || len(signed) == 0 {
		return nil, fmt.Errorf("%w: checkpoint without origin, size or note", ErrMalformedMessage)
	}
	msg := message.NewMessage(CheckpointUUID(cp.Origin, cp.Size).String(), append([]byte(nil), signed...))
	msg.Metadata.Set(MetaName, MessageCheckpoint)
	msg.Metadata.Set(MetaTreeSize, strconv.FormatInt(cp.Size, 10))
	msg.Metadata.Set(MetaRoot, cp.Root.String())
	return msg, nil
}

// CheckpointSink publishes the ledger's checkpoints on TopicLedger; it
// implements ledger.Sink. On the in-process bus a message nobody
// subscribes to is dropped: the copy outside the database needs NATS or
// PostgreSQL (or a witness reading the checkpoint directory).
type CheckpointSink struct {
	Publisher message.Publisher
}

// PublishCheckpoint implements ledger.Sink.
func (s CheckpointSink) PublishCheckpoint(ctx context.Context, cp ledger.Checkpoint, signed []byte) error {
	msg, err := EncodeCheckpoint(cp, signed)
	if err != nil {
		return err
	}
	msg.SetContext(ctx)
	if err := s.Publisher.Publish(TopicLedger, msg); err != nil {
		return fmt.Errorf("bus: publish checkpoint %d: %w", cp.Size, err)
	}
	return nil
}
