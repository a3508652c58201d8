package bus_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/domain"
)

func TestEventMarshalerUnmarshalsDomainEvents(t *testing.T) {
	var m bus.EventMarshaler
	for _, rec := range bustest.History(t, 60) {
		msg, err := bus.EncodeEvent(rec)
		require.NoError(t, err)
		want, err := domain.Decode(rec.Type, rec.Data)
		require.NoError(t, err)

		v := reflect.New(reflect.TypeOf(want).Elem()).Interface() // a fresh *domain.X, as cqrs's NewEvent gives
		require.Equal(t, rec.Type, m.Name(v))
		require.Equal(t, rec.Type, m.NameFromMessage(msg))
		require.NoError(t, m.Unmarshal(msg, v))
		require.Equal(t, want, v)
	}
}

func TestEventMarshalerRefusesTheWrongEvent(t *testing.T) {
	var m bus.EventMarshaler
	rec := bustest.History(t, 1)[0] // account.invited.v1
	msg, err := bus.EncodeEvent(rec)
	require.NoError(t, err)
	require.ErrorIs(t, m.Unmarshal(msg, &domain.PlacementEnded{}), bus.ErrMalformedMessage)
	require.Error(t, m.Unmarshal(message.NewMessage(msg.UUID, []byte("{")), &domain.AccountInvited{}))
}

type expireThing struct {
	ID  uuid.UUID `json:"id"`
	Due time.Time `json:"due"`
}

type namedCommand struct{ X int }

func (namedCommand) Name() string { return "named.command" }

func TestEventMarshalerCommands(t *testing.T) {
	id := uuid.New()
	m := bus.EventMarshaler{NewUUID: func(v any) string { return "cmd-" + v.(expireThing).ID.String() }}
	cmd := expireThing{ID: id, Due: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}

	msg, err := m.Marshal(cmd)
	require.NoError(t, err)
	require.Equal(t, "cmd-"+id.String(), msg.UUID)
	require.Equal(t, "bus_test.expireThing", m.Name(cmd))
	require.Equal(t, "bus_test.expireThing", m.NameFromMessage(msg))
	var got expireThing
	require.NoError(t, m.Unmarshal(msg, &got))
	require.Equal(t, cmd, got)

	require.Equal(t, "named.command", bus.EventMarshaler{}.Name(namedCommand{}))
	msg, err = bus.EventMarshaler{}.Marshal(namedCommand{X: 1})
	require.NoError(t, err)
	_, err = uuid.Parse(msg.UUID)
	require.NoError(t, err, "default UUIDs are random UUIDs")

	_, err = m.Marshal(&domain.PlacementEnded{})
	require.ErrorIs(t, err, bus.ErrEventNotFromLog)
}

// A cqrs EventProcessor with EventMarshaler hands its handler the domain's
// own event type, and the handler finds the event's metadata through the
// original message.
func TestEventMarshalerWithCQRSProcessor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, sub := bustest.Open(t, bustest.Config(t, bus.KindGoChannel))
	topic := bustest.Topic(t, bus.TopicEvents)
	logger := watermill.NewSlogLogger(nil)

	router, err := message.NewRouter(message.RouterConfig{}, logger)
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		ended []*domain.PlacementEnded
		envs  []domain.Envelope
	)
	processor, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) { return topic, nil },
		SubscriberConstructor:  func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) { return sub, nil },
		Marshaler:              bus.EventMarshaler{},
		AckOnUnknownEvent:      true,
		Logger:                 logger,
	})
	require.NoError(t, err)
	require.NoError(t, processor.AddHandlers(cqrs.NewEventHandler("placement-ended", func(ctx context.Context, e *domain.PlacementEnded) error {
		env, err := bus.DecodeEvent(cqrs.OriginalMessageFromCtx(ctx))
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		ended = append(ended, e)
		envs = append(envs, env)
		return nil
	})))
	go func() { _ = router.Run(ctx) }()
	defer func() { require.NoError(t, router.Close()) }()
	<-router.Running()

	recs := bustest.History(t, 40)
	var want []*domain.PlacementEnded
	for _, rec := range recs {
		msg, err := bus.EncodeEvent(rec)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(topic, msg)) // blocks until handled
		if rec.Type == domain.TypePlacementEnded {
			e, err := domain.Decode(rec.Type, rec.Data)
			require.NoError(t, err)
			want = append(want, e.(*domain.PlacementEnded))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, want)
	require.Equal(t, want, ended)
	for i, env := range envs {
		require.Equal(t, env.Event, ended[i])
		require.NotEqual(t, uuid.Nil, env.CorrelationID)
	}
}
