// Package bus is the engine's message bus: the wire format of the messages
// it carries and the watermill Publisher/Subscriber pairs it runs on.
//
// # Topics and messages
//
// TopicEvents carries every event of the log, one message per event, in log
// order (the outbox relay publishes them, adapters/outbox); EncodeEvent and
// DecodeEvent define the message. TopicAccess carries the integration
// events access.changed (one per change in who can see what, the change
// feed of GET /v1/watch) and access.reset; see EncodeAccessChanged.
// EventMarshaler lets watermill's cqrs processors consume TopicEvents with
// the domain's event types and carry commands as JSON. docs/messaging.md
// describes the formats for other systems.
//
// # Buses
//
// Open builds the Publisher and Subscriber of one of three kinds:
//
//   - KindGoChannel (the embedded default): watermill's in-process
//     gochannel. Nothing is stored: a message published while nobody
//     subscribes to its topic is dropped, so subscribe (start the router)
//     before starting the relay. Publish blocks until every subscriber has
//     acked the message, which keeps order and makes the relay's checkpoint
//     mean "handled" rather than "handed over".
//   - KindNATS: NATS JetStream (watermill-nats/v2, pkg/nats). One stream
//     per topic (NATSStreamName), provisioned on first use, with the topic
//     as its subject; one durable push consumer per topic and Config.Consumer
//     (NATSConsumerName), created by this package so that it survives
//     unsubscribing, and shared as a queue group by every replica.
//     Publishing waits for the stream's ack and sets the message UUID as
//     Nats-Msg-Id, so the stream drops a republished event within its
//     duplicate window (2 minutes by default).
//   - KindPostgres: watermill-sql/v4 over pgx's database/sql driver, with
//     the default PostgreSQL schema and offsets adapters: a table
//     watermill_<topic> per topic and watermill_offsets_<topic> for the
//     consumer groups' offsets, created on first use.
//
// # Delivery
//
// Every kind delivers at least once to each consumer group (each
// subscriber on gochannel). Order: gochannel and PostgreSQL deliver a
// topic's messages to a consumer group in publish order, also across
// redeliveries (a nacked message is resent before the next one). JetStream
// delivers in stream order, one message in flight per consumer group
// (Config.NATSMaxAckPending = 1) so that a nack or an ack timeout redelivers
// it before the next; with a larger NATSMaxAckPending, redeliveries may come
// after later messages. Consumers must in any case tolerate duplicates.
package bus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" (architecture decision 11)
)

// Kind names a bus implementation.
type Kind string

// The bus kinds.
const (
	KindGoChannel Kind = "gochannel"
	KindNATS      Kind = "nats"
	KindPostgres  Kind = "postgres"
)

// Defaults of Config.
const (
	DefaultConsumer     = "accessledger"
	DefaultAckWait      = 30 * time.Second
	DefaultPollInterval = 200 * time.Millisecond
)

// Config selects and configures a bus. The zero value is the embedded
// gochannel bus.
type Config struct {
	// Kind is the implementation; "" is KindGoChannel.
	Kind Kind
	// URL is the server: a NATS URL (nats://host:4222, several separated by
	// commas) for KindNATS, a postgres:// URL for KindPostgres (pgx reads
	// its parameters, search_path among them). Unused by KindGoChannel.
	URL string
	// Consumer is the consumer group of the Subscriber: the durable
	// consumer's name on NATS, the consumer_group on PostgreSQL. Processes
	// subscribing with the same Consumer share the work (each message goes
	// to one of them); another Consumer gets every message again. Letters,
	// digits, '-' and '_', at most 64. Default DefaultConsumer. Unused by
	// KindGoChannel, where every subscriber gets every message.
	Consumer string
	// AckWait is how long a subscriber may hold a message without acking
	// it before it is redelivered (NATS AckWait, PostgreSQL AckDeadline).
	// Default DefaultAckWait.
	AckWait time.Duration
	// PollInterval is how often an idle PostgreSQL subscriber looks for
	// new messages. Default DefaultPollInterval.
	PollInterval time.Duration
	// NATSMaxAckPending is how many messages a JetStream consumer group
	// may have delivered and not yet acked. Default 1: strict order, also
	// across redeliveries. Changing it for an existing consumer updates the
	// consumer.
	NATSMaxAckPending int
	// Logger receives the bus's own logs. Default slog.Default().
	Logger *slog.Logger
}

var consumerName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var problems []error
	switch c.Kind {
	case "", KindGoChannel:
	case KindNATS:
		if c.URL == "" {
			problems = append(problems, errors.New("URL is required for the nats bus"))
		}
	case KindPostgres:
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			problems = append(problems, errors.New("URL must be a postgres:// URL for the postgres bus"))
		}
	default:
		problems = append(problems, fmt.Errorf("kind %q is not one of gochannel, nats, postgres", c.Kind))
	}
	if c.Consumer != "" && !consumerName.MatchString(c.Consumer) {
		problems = append(problems, fmt.Errorf("consumer %q: use 1 to 64 letters, digits, '-' or '_'", c.Consumer))
	}
	if c.AckWait < 0 {
		problems = append(problems, fmt.Errorf("AckWait %s is negative", c.AckWait))
	}
	if c.PollInterval < 0 {
		problems = append(problems, fmt.Errorf("PollInterval %s is negative", c.PollInterval))
	}
	if c.NATSMaxAckPending < 0 {
		problems = append(problems, fmt.Errorf("NATSMaxAckPending %d is negative", c.NATSMaxAckPending))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("bus: invalid config: %w", err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Kind == "" {
		c.Kind = KindGoChannel
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.NATSMaxAckPending == 0 {
		c.NATSMaxAckPending = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Open connects to the bus cfg describes and returns its Publisher and
// Subscriber, and a function that closes both (and the connections) once;
// call it after the publishers and routers using them have stopped.
//
// On KindGoChannel the Publisher and Subscriber are one in-process bus:
// everything that talks through it must come from the same Open. On NATS
// and PostgreSQL, Open fails when the server cannot be reached; streams,
// consumers and tables are created on first use of a topic (Publish, or
// Subscribe, or SubscribeInitialize of the Subscriber).
func Open(ctx context.Context, cfg Config) (message.Publisher, message.Subscriber, func() error, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, nil, err
	}
	cfg = cfg.withDefaults()
	logger := quietLogger{watermill.NewSlogLoggerWithLevelMapping(cfg.Logger.With("component", "bus", "bus", string(cfg.Kind)),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})}
	switch cfg.Kind {
	case KindNATS:
		return openNATS(ctx, cfg, logger)
	case KindPostgres:
		return openPostgres(ctx, cfg, logger)
	}
	gc := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
	return gc, gc, gc.Close, nil
}

func openPostgres(ctx context.Context, cfg Config, logger watermill.LoggerAdapter) (message.Publisher, message.Subscriber, func() error, error) {
	db, err := sql.Open("pgx", cfg.URL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bus: open postgres: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, nil, nil, fmt.Errorf("bus: postgres does not answer: %w", err)
	}
	beginner := wmsql.BeginnerFromStdSQL(db)
	schema := wmsql.DefaultPostgreSQLSchema{}
	pub, err := wmsql.NewPublisher(beginner, wmsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
	if err != nil {
		_ = db.Close()
		return nil, nil, nil, fmt.Errorf("bus: postgres publisher: %w", err)
	}
	ackWait := cfg.AckWait
	sub, err := wmsql.NewSubscriber(beginner, wmsql.SubscriberConfig{
		ConsumerGroup:    cfg.Consumer,
		AckDeadline:      &ackWait,
		PollInterval:     cfg.PollInterval,
		ResendInterval:   cfg.PollInterval,
		RetryInterval:    time.Second,
		SchemaAdapter:    schema,
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, logger)
	if err != nil {
		_ = pub.Close()
		_ = db.Close()
		return nil, nil, nil, fmt.Errorf("bus: postgres subscriber: %w", err)
	}
	closer := onceCloser(func() error {
		return errors.Join(sub.Close(), pub.Close(), db.Close())
	})
	return pub, sub, closer, nil
}

// onceCloser runs close once; later calls return its first result.
func onceCloser(close func() error) func() error {
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() { err = close() })
		return err
	}
}

// quietLogger is the watermill logger of the buses: watermill's Info logs
// (subscriptions starting and stopping, schema initialization) go to Debug,
// and so do the errors a subscription reports because its context ended,
// which are how every subscription stops.
type quietLogger struct{ watermill.LoggerAdapter }

func (l quietLogger) Error(msg string, err error, fields watermill.LogFields) {
	if isCancel(err) || fieldsCancel(fields) {
		l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l quietLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietLogger{l.LoggerAdapter.With(fields)}
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func fieldsCancel(fields watermill.LogFields) bool {
	for _, v := range fields {
		if err, ok := v.(error); ok && isCancel(err) {
			return true
		}
	}
	return false
}
