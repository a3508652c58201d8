package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// natsDuplicateWindow is how long a stream this package creates remembers
// message ids (Nats-Msg-Id, the message UUID) to drop republished ones.
const natsDuplicateWindow = 2 * time.Minute

// NATSMaxAge is how long a stream this package creates keeps a message.
// Messages carry events as the engine reads them, personal values opened
// (docs/personal-data.md): erasure cannot reach a message already
// published, so the bus must not keep them for good. Consumers have this
// long to catch up; operators may tune an existing stream's limits.
const NATSMaxAge = 30 * 24 * time.Hour

// NATSStreamName is the JetStream stream of a topic: the topic with every
// character other than a letter, digit, '-' or '_' replaced by '_' (stream
// names cannot hold '.'), e.g. accessledger_events_v1. Its one subject is
// the topic itself.
func NATSStreamName(topic string) string { return natsName(topic) }

// NATSConsumerName is the durable JetStream consumer (and queue group) of a
// consumer group on a topic: "<consumer>__<stream>", e.g.
// accessledger__accessledger_events_v1.
func NATSConsumerName(consumer, topic string) string {
	return natsName(consumer) + "__" + natsName(topic)
}

func natsName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

func openNATS(_ context.Context, cfg Config, logger watermill.LoggerAdapter) (message.Publisher, message.Subscriber, func() error, error) {
	pubConn, err := connectNATS(cfg, "publisher")
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetStream(pubConn)
	if err != nil {
		pubConn.Close()
		return nil, nil, nil, err
	}
	inner, err := wmnats.NewPublisherWithNatsConn(pubConn, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		// Streams are provisioned here (ensureStream), not by watermill,
		// which would name the stream after the topic: JetStream refuses
		// '.' in stream names.
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, logger)
	if err != nil {
		pubConn.Close()
		return nil, nil, nil, fmt.Errorf("bus: nats publisher: %w", err)
	}
	pub := &natsPublisher{js: js, inner: inner}

	subConn, err := connectNATS(cfg, "subscriber")
	if err != nil {
		_ = inner.Close()
		return nil, nil, nil, err
	}
	subJS, err := jetStream(subConn)
	if err != nil {
		subConn.Close()
		_ = inner.Close()
		return nil, nil, nil, err
	}
	sub := &natsSubscriber{cfg: cfg, logger: logger, nc: subConn, js: subJS}
	return pub, sub, onceCloser(func() error { return errors.Join(sub.Close(), pub.Close()) }), nil
}

func connectNATS(cfg Config, role string) (*nats.Conn, error) {
	log := cfg.Logger.With("component", "bus", "bus", "nats", "connection", role)
	nc, err := nats.Connect(cfg.URL,
		nats.Name("accessledger "+role),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Error("nats error", "error", err) }),
	)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to nats: %w", err)
	}
	return nc, nil
}

// jetStream returns nc's JetStream context after checking that the server
// has JetStream enabled.
func jetStream(nc *nats.Conn) (nats.JetStreamContext, error) {
	js, err := nc.JetStream()
	if err != nil {
		return nil, fmt.Errorf("bus: nats jetstream: %w", err)
	}
	if _, err := js.AccountInfo(); err != nil {
		return nil, fmt.Errorf("bus: nats jetstream not available (start nats-server with -js): %w", err)
	}
	return js, nil
}

// ensureStream creates the stream of topic unless it exists. An existing
// stream is left as it is (operators may tune its limits).
func ensureStream(js nats.JetStreamManager, topic string) error {
	name := NATSStreamName(topic)
	if _, err := js.StreamInfo(name); err == nil {
		return nil
	} else if !errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("bus: nats stream %s: %w", name, err)
	}
	_, err := js.AddStream(&nats.StreamConfig{
		Name:        name,
		Description: "accessledger topic " + topic,
		Subjects:    []string{topic},
		Storage:     nats.FileStorage,
		Retention:   nats.LimitsPolicy,
		MaxAge:      NATSMaxAge,
		Duplicates:  natsDuplicateWindow,
	})
	if err != nil {
		if _, again := js.StreamInfo(name); again == nil { // created concurrently
			return nil
		}
		return fmt.Errorf("bus: create nats stream %s: %w", name, err)
	}
	return nil
}

// natsPublisher provisions a topic's stream before its first publish:
// JetStream refuses a publish to a subject no stream holds.
type natsPublisher struct {
	js    nats.JetStreamManager
	inner *wmnats.Publisher
	ready sync.Map // topic -> struct{}
}

// Publish publishes the messages in order, each waiting for the stream's
// ack, with the UUID as Nats-Msg-Id.
func (p *natsPublisher) Publish(topic string, msgs ...*message.Message) error {
	if _, ok := p.ready.Load(topic); !ok {
		if err := ensureStream(p.js, topic); err != nil {
			return err
		}
		p.ready.Store(topic, struct{}{})
	}
	return p.inner.Publish(topic, msgs...)
}

// Close closes the publisher's connection.
func (p *natsPublisher) Close() error { return p.inner.Close() }

// natsSubscriber provisions a topic's stream and the durable consumer of
// its consumer group, then binds a watermill subscriber to that consumer.
// Binding (rather than letting nats.go create the consumer) keeps the
// consumer, and so the group's acks, when a subscription ends: nats.go
// deletes the consumers it created itself on Unsubscribe.
type natsSubscriber struct {
	cfg    Config
	logger watermill.LoggerAdapter
	nc     *nats.Conn
	js     nats.JetStreamContext

	mu     sync.Mutex
	closed bool
	inner  []*wmnats.Subscriber
}

var (
	_ message.Subscriber           = (*natsSubscriber)(nil)
	_ message.SubscribeInitializer = (*natsSubscriber)(nil)
)

// SubscribeInitialize creates the topic's stream and the consumer group's
// durable consumer unless they exist, and updates the consumer's AckWait
// and MaxAckPending to the configuration's.
func (s *natsSubscriber) SubscribeInitialize(topic string) error {
	if err := ensureStream(s.js, topic); err != nil {
		return err
	}
	stream, durable := NATSStreamName(topic), NATSConsumerName(s.cfg.Consumer, topic)
	info, err := s.js.ConsumerInfo(stream, durable)
	switch {
	case errors.Is(err, nats.ErrConsumerNotFound):
		_, err = s.js.AddConsumer(stream, &nats.ConsumerConfig{
			Durable:        durable,
			Description:    "accessledger consumer group " + s.cfg.Consumer + " on " + topic,
			DeliverSubject: nats.NewInbox(),
			DeliverGroup:   durable,
			DeliverPolicy:  nats.DeliverAllPolicy,
			AckPolicy:      nats.AckExplicitPolicy,
			AckWait:        s.cfg.AckWait,
			MaxAckPending:  s.cfg.NATSMaxAckPending,
			FilterSubject:  topic,
			ReplayPolicy:   nats.ReplayInstantPolicy,
		})
		if err != nil {
			if _, again := s.js.ConsumerInfo(stream, durable); again == nil { // created concurrently
				return nil
			}
			return fmt.Errorf("bus: create nats consumer %s on %s: %w", durable, stream, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("bus: nats consumer %s on %s: %w", durable, stream, err)
	case info.Config.AckWait != s.cfg.AckWait || info.Config.MaxAckPending != s.cfg.NATSMaxAckPending:
		c := info.Config
		c.AckWait, c.MaxAckPending = s.cfg.AckWait, s.cfg.NATSMaxAckPending
		if _, err := s.js.UpdateConsumer(stream, &c); err != nil {
			return fmt.Errorf("bus: update nats consumer %s on %s: %w", durable, stream, err)
		}
	}
	return nil
}

// Subscribe joins the consumer group's queue on topic, on a connection of
// its own, until ctx ends or the subscriber is closed.
func (s *natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("bus: nats subscriber closed")
	}
	if err := s.SubscribeInitialize(topic); err != nil {
		return nil, err
	}
	stream, durable := NATSStreamName(topic), NATSConsumerName(s.cfg.Consumer, topic)
	conn, err := connectNATS(s.cfg, "subscriber "+durable)
	if err != nil {
		return nil, err
	}
	inner, err := wmnats.NewSubscriberWithNatsConn(conn, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      &wmnats.NATSMarshaler{},
		SubscribersCount: 1,
		AckWaitTimeout:   s.cfg.AckWait,
		CloseTimeout:     30 * time.Second,
		SubjectCalculator: func(string, string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic, QueueGroup: durable}
		},
		QueueGroupPrefix: durable,
		JetStream: wmnats.JetStreamConfig{
			// ManualAck: without it nats.go acks every message when the
			// callback returns, which watermill's does also when it gives
			// up on a message (subscription ending, ack timeout): the
			// message would be lost instead of redelivered.
			SubscribeOptions:  []nats.SubOpt{nats.Bind(stream, durable), nats.ManualAck()},
			DurableCalculator: func(string, string) string { return durable },
		},
	}, s.logger)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bus: nats subscriber: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = inner.Close()
		return nil, errors.New("bus: nats subscriber closed")
	}
	s.inner = append(s.inner, inner)
	s.mu.Unlock()
	out, err := inner.Subscribe(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("bus: nats subscribe %s: %w", topic, err)
	}
	return out, nil
}

// Close ends every subscription, waiting (bounded) for messages in
// flight, and closes the connections.
func (s *natsSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	inner := s.inner
	s.inner = nil
	s.mu.Unlock()
	var errs []error
	for _, in := range inner {
		errs = append(errs, in.Close())
	}
	s.nc.Close()
	return errors.Join(errs...)
}
