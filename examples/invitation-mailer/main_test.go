package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/syncbuf"
)

var (
	accountID = uuid.MustParse("7d1e9f20-3a4b-4c5d-8e6f-708192a3b4c5")
	eventID   = uuid.MustParse("e1000000-0000-4000-8000-000000000001")
	invitedAt = time.Date(2026, 1, 5, 9, 30, 0, 0, time.UTC)
	expiresAt = invitedAt.Add(14 * 24 * time.Hour)
)

// encoded is the message the outbox relay publishes for the event e with
// id id: the engine's own encoding (bus.EncodeEvent of a record whose data
// is domain.Encode's), as read through the personal-data layer (plain
// values).
func encoded(t *testing.T, id uuid.UUID, e domain.Event, pos uint64) *message.Message {
	t.Helper()
	data, err := domain.Encode(e)
	require.NoError(t, err)
	return encodedData(t, id, e.EventType(), data, pos)
}

func encodedData(t *testing.T, id uuid.UUID, typ string, data []byte, pos uint64) *message.Message {
	t.Helper()
	msg, err := bus.EncodeEvent(eventlog.Record{ID: id, Stream: "account-" + accountID.String(), Version: 1, Type: typ,
		Position: eventlog.At(pos), Data: data,
		Meta: eventlog.Meta{ActorID: "worker-ann", ActorRole: "worker", EffectiveAt: invitedAt, RecordedAt: invitedAt,
			CorrelationID: uuid.New()}})
	require.NoError(t, err)
	return msg
}

func invited(email string) *domain.AccountInvited {
	return &domain.AccountInvited{AccountID: accountID, Email: email, Kind: domain.KindFosterCarer,
		InvitedAt: invitedAt, ExpiresAt: expiresAt}
}

// TestHandle runs the mailer's handler on messages as the relay encodes
// them.
func TestHandle(t *testing.T) {
	erased, err := json.Marshal(map[string]any{"account_id": accountID, "email": "[erased]", "kind": "parent",
		"invited_at": invitedAt, "expires_at": expiresAt})
	require.NoError(t, err)
	line := "invitation: to=jo@example.org kind=foster_carer expires=2026-01-19T09:30:00Z " +
		"link=https://portal.example.org/sign-in?invitation=" + accountID.String() + "&email=jo%40example.org " +
		"account=" + accountID.String() + " event=" + eventID.String() + "\n"
	cases := []struct {
		name     string
		msgs     func(t *testing.T) []*message.Message
		now      time.Time
		out, log string
	}{
		{
			name: "an invitation: the email it would send",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{encoded(t, eventID, invited("jo@example.org"), 14)}
			},
			now: invitedAt.Add(time.Minute),
			out: line,
		},
		{
			name: "delivered twice: sent once",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{encoded(t, eventID, invited("jo@example.org"), 14), encoded(t, eventID, invited("jo@example.org"), 14)}
			},
			now: invitedAt.Add(time.Minute),
			out: line,
			log: "invitation-mailer: event " + eventID.String() + ": already sent\n",
		},
		{
			name: "expired (a new consumer group reads old invitations)",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{encoded(t, eventID, invited("jo@example.org"), 14)}
			},
			now: expiresAt,
			log: "invitation-mailer: event " + eventID.String() + ": the invitation of account " + accountID.String() + " expired at 2026-01-19T09:30:00Z: not sent\n",
		},
		{
			name: "erased before the relay published it",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{encodedData(t, eventID, domain.TypeAccountInvited, erased, 14)}
			},
			now: invitedAt,
			log: "invitation-mailer: event " + eventID.String() + ": account " + accountID.String() + " was erased: nothing to send\n",
		},
		{
			name: "other events are ignored",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{encoded(t, eventID, &domain.AccountActivated{AccountID: accountID, IdentitySubject: "mynorfolk|42",
					ActivatedAt: invitedAt}, 15)}
			},
			now: invitedAt,
		},
		{
			name: "not an event: dropped",
			msgs: func(t *testing.T) []*message.Message {
				return []*message.Message{message.NewMessage("m-1", []byte("hello"))}
			},
			now: invitedAt,
			log: "invitation-mailer: message m-1 is not an accessledger event: dropped\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			m := &Mailer{Out: &out, Log: &log, SignInURL: "https://portal.example.org/sign-in?invitation={account_id}&email={email}",
				Now: func() time.Time { return tc.now }}
			for _, msg := range tc.msgs(t) {
				require.NoError(t, m.Handle(msg))
			}
			require.Equal(t, tc.out, out.String())
			require.Equal(t, tc.log, log.String())
		})
	}
}

func TestBusFlag(t *testing.T) {
	cases := []struct {
		bus  string
		kind bus.Kind
		err  string
	}{
		{"nats://127.0.0.1:4222", bus.KindNATS, ""},
		{"postgres://u@h/db", bus.KindPostgres, ""},
		{"gochannel", "", `--bus "gochannel": want nats://HOST:4222 or postgres://`},
	}
	for _, tc := range cases {
		cfg, err := busConfig(tc.bus, "invitation-mailer")
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.kind, cfg.Kind)
		require.Equal(t, "invitation-mailer", cfg.Consumer)
	}
	var stderr bytes.Buffer
	require.Equal(t, 2, mainWith(context.Background(), []string{"--bus", "amqp://x"}, &bytes.Buffer{}, &stderr))
	require.Contains(t, stderr.String(), "want nats://HOST:4222")
}

// TestEndToEnd publishes an invitation as the engine's relay does on a
// real bus (NATS JetStream at $ACCESSLEDGER_TEST_NATS_URL, PostgreSQL at
// $ACCESSLEDGER_TEST_POSTGRES_DSN; skipped when unset), on a topic of the
// test's own, and waits for the mailer's line.
func TestEndToEnd(t *testing.T) {
	for _, kind := range []bus.Kind{bus.KindNATS, bus.KindPostgres} {
		t.Run(string(kind), func(t *testing.T) {
			cfg := bustest.Config(t, kind)
			topic := bustest.Topic(t, bus.TopicEvents)
			pub, _ := bustest.Open(t, cfg)
			id := uuid.New()
			email := "carer-" + bustest.Suffix(t) + "@example.org"
			inv := invited(email)
			inv.InvitedAt, inv.ExpiresAt = time.Now().UTC().Truncate(time.Microsecond), time.Now().UTC().Add(14*24*time.Hour).Truncate(time.Microsecond)
			require.NoError(t, pub.Publish(topic, encoded(t, uuid.New(), &domain.AccountClosed{AccountID: accountID, ClosedAt: invitedAt}, 1),
				encoded(t, id, inv, 2)))

			var out, log syncbuf.Buffer
			m := &Mailer{Out: &out, Log: &log, SignInURL: "https://portal.example.org/sign-in"}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Run(ctx, cfg, topic, m) }()
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "event="+id.String()) }, 30*time.Second, 20*time.Millisecond,
				"the mailer's line; its log: %s", log.String())
			cancel()
			require.NoError(t, <-done)
			require.Equal(t, "invitation: to="+email+" kind=foster_carer expires="+inv.ExpiresAt.Format(time.RFC3339)+
				" link=https://portal.example.org/sign-in account="+accountID.String()+" event="+id.String()+"\n", out.String())
		})
	}
}
