// Command invitation-mailer is an example consumer of accessledger's events
// topic for portal backend developers (docs/integration.md, "Sending the
// invitation emails"). The engine sends no email: a worker's invitation is
// recorded as an account.invited.v1 event, and the engine run with
// --bus nats://… (or postgres://…) publishes every event on the topic
// accessledger.events.v1. This program follows that topic in a consumer
// group of its own and, for each invitation, prints the email it would send
// (the address, the kind of account, when the invitation expires, the
// sign-in link) instead of sending it:
//
//	go run ./examples/invitation-mailer --bus nats://127.0.0.1:4222 \
//	    --sign-in-url 'https://portal.example.org/sign-in?invitation={account_id}'
//
// It reads the documented JSON of the messages (docs/messaging.md), not the
// engine's Go types, as a consumer in any language would. What a real
// mailer must add is marked "A real mailer" below.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/adapters/bus"
)

// invitedType is the event type of an invitation (docs/events.md). An
// expired invitation that a worker renews is recorded again with the same
// type, a new event id and a new expiry: it is sent again.
const invitedType = "account.invited.v1"

// erasedText stands in for a personal value whose subject was erased
// (docs/personal-data.md): there is no address to send to.
const erasedText = "[erased]"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainWith(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainWith parses args and runs the mailer until ctx ends; it returns the
// exit code.
func mainWith(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invitation-mailer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	busURL := fs.String("bus", envOr("ACCESSLEDGER_BUS", "nats://127.0.0.1:4222"),
		"the engine's bus: nats://HOST:4222 (NATS JetStream) or postgres://… (env ACCESSLEDGER_BUS)")
	consumer := fs.String("consumer", "invitation-mailer",
		"the consumer group: processes with the same one share the invitations; keep it for good (a new group starts at the beginning of the topic)")
	signIn := fs.String("sign-in-url", "https://portal.example.org/sign-in",
		"the portal's sign-in link; {account_id} and {email} are replaced (query-escaped)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := busConfig(*busURL, *consumer)
	if err != nil {
		fmt.Fprintf(stderr, "invitation-mailer: %v\n", err)
		return 2
	}
	m := &Mailer{Out: stdout, Log: stderr, SignInURL: *signIn}
	if err := Run(ctx, cfg, bus.TopicEvents, m); err != nil {
		fmt.Fprintf(stderr, "invitation-mailer: %v\n", err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// busConfig maps --bus to the bus configuration, as accessd's --bus does.
func busConfig(u, consumer string) (bus.Config, error) {
	cfg := bus.Config{URL: u, Consumer: consumer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	switch {
	case strings.HasPrefix(u, "nats://"), strings.HasPrefix(u, "tls://"):
		cfg.Kind = bus.KindNATS
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		cfg.Kind = bus.KindPostgres
	default:
		return bus.Config{}, fmt.Errorf("--bus %q: want nats://HOST:4222 or postgres://… (the engine's --bus)", u)
	}
	return cfg, cfg.Validate()
}

// Run subscribes to topic on the bus of cfg and hands every message to m,
// acking it when m.Handle succeeds and nacking it (the bus delivers it
// again) when it fails, until ctx ends. On NATS the consumer group is a
// durable JetStream consumer (docs/messaging.md, "Consumer groups"): it
// remembers what was acked across restarts, and a new group starts at the
// beginning of the stream.
func Run(ctx context.Context, cfg bus.Config, topic string, m *Mailer) (err error) {
	_, sub, closeBus, err := bus.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBus()) }()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Log, "invitation-mailer: following %s as consumer group %s\n", topic, cfg.Consumer)
	for msg := range msgs {
		if err := m.Handle(msg); err != nil {
			fmt.Fprintf(m.Log, "invitation-mailer: message %s: %v (it will come again)\n", msg.UUID, err)
			msg.Nack()
			continue
		}
		msg.Ack()
	}
	return nil
}

// Mailer prints the email each invitation would get. Its zero value is
// not usable: set Out and Log.
type Mailer struct {
	// Out receives one line per email: "invitation: to=… kind=…
	// expires=… link=… account=… event=…".
	Out io.Writer
	// Log receives why a message was skipped.
	Log io.Writer
	// SignInURL is the link's template: {account_id} and {email} are
	// replaced, query-escaped.
	SignInURL string
	// Now is the clock that tells expired invitations (nil: time.Now).
	Now func() time.Time

	// sent holds the event ids already handled. Delivery is at least once
	// (a redelivery after a restart or an ack timeout, a republish), so a
	// mailer deduplicates on the event id. A real mailer keeps them in its
	// own database, in the transaction that queues the email.
	sent map[string]bool
}

// wireEvent is the payload of a message of accessledger.events.v1
// (docs/messaging.md); the fields this mailer needs.
type wireEvent struct {
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	Position string          `json:"position"`
	Data     json.RawMessage `json:"data"`
}

// invitation is the data of an account.invited.v1 event (docs/events.md).
type invitation struct {
	AccountID string    `json:"account_id"`
	Email     string    `json:"email"`
	Kind      string    `json:"kind"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Handle handles one message of the events topic. For an account.invited.v1
// event it prints the email to Out once per event id; it skips, with a line
// on Log, an invitation already handled, one that has expired (a new
// consumer group reads the topic from its beginning) and one whose email was
// erased. Every other event type is ignored, as are fields it does not know
// (the format may grow). A message that is not an event is logged and
// dropped: delivering it again would not mend it. Handle returns an error
// only when the message should be delivered again (here, when Out fails; a
// real mailer also when its mail queue does).
func (m *Mailer) Handle(msg *message.Message) error {
	if t := msg.Metadata.Get(bus.MetaEventType); t != "" && t != invitedType {
		return nil // the metadata names the type: no need to read the payload
	}
	var e wireEvent
	if err := json.Unmarshal(msg.Payload, &e); err != nil || e.EventID == "" || e.Type == "" {
		fmt.Fprintf(m.Log, "invitation-mailer: message %s is not an accessledger event: dropped\n", msg.UUID)
		return nil
	}
	if e.Type != invitedType {
		return nil
	}
	var inv invitation
	if err := json.Unmarshal(e.Data, &inv); err != nil || inv.AccountID == "" || inv.ExpiresAt.IsZero() {
		fmt.Fprintf(m.Log, "invitation-mailer: event %s: unreadable invitation: dropped\n", e.EventID)
		return nil
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	switch {
	case m.sent[e.EventID]:
		fmt.Fprintf(m.Log, "invitation-mailer: event %s: already sent\n", e.EventID)
		return nil
	case inv.Email == erasedText:
		fmt.Fprintf(m.Log, "invitation-mailer: event %s: account %s was erased: nothing to send\n", e.EventID, inv.AccountID)
		return nil
	case !inv.ExpiresAt.After(now()):
		fmt.Fprintf(m.Log, "invitation-mailer: event %s: the invitation of account %s expired at %s: not sent\n",
			e.EventID, inv.AccountID, inv.ExpiresAt.UTC().Format(time.RFC3339))
		return nil
	}
	// A real mailer sends (or queues) the email here, and records the event
	// id with it.
	if _, err := fmt.Fprintf(m.Out, "invitation: to=%s kind=%s expires=%s link=%s account=%s event=%s\n",
		inv.Email, inv.Kind, inv.ExpiresAt.UTC().Format(time.RFC3339), m.link(inv), inv.AccountID, e.EventID); err != nil {
		return err
	}
	if m.sent == nil {
		m.sent = map[string]bool{}
	}
	m.sent[e.EventID] = true
	return nil
}

// link fills the sign-in link's template.
func (m *Mailer) link(inv invitation) string {
	return strings.NewReplacer("{account_id}", url.QueryEscape(inv.AccountID), "{email}", url.QueryEscape(inv.Email)).Replace(m.SignInURL)
}
