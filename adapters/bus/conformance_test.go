package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

const deliveryTimeout = 60 * time.Second

// encodeAll encodes records as TopicEvents messages.
func encodeAll(t *testing.T, recs []eventlog.Record) []*message.Message {
	t.Helper()
	msgs := make([]*message.Message, len(recs))
	for i, r := range recs {
		m, err := bus.EncodeEvent(r)
		require.NoError(t, err)
		msgs[i] = m
	}
	return msgs
}

// firstDeliveries returns the messages in order of their first delivery,
// dropping redeliveries.
func firstDeliveries(msgs []*message.Message) []*message.Message {
	seen := map[string]bool{}
	var out []*message.Message
	for _, m := range msgs {
		if !seen[m.UUID] {
			seen[m.UUID] = true
			out = append(out, m)
		}
	}
	return out
}

// TestConformance runs the same contract on every bus kind: 500 events
// published in log order (one by one, then in batches) reach a subscriber,
// each with its event id as UUID and its metadata, and decode to the
// records published. Order: the first deliveries come in publish order,
// which is log order, hence stream order.
//
// On JetStream this holds because the stream stores messages in publish
// order and the consumer group has one message in flight
// (NATSMaxAckPending 1); TestRedeliveryKeepsOrder covers redeliveries.
func TestConformance(t *testing.T) {
	recs := bustest.History(t, 500)[:500]
	for _, kind := range bustest.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*deliveryTimeout)
			defer cancel()
			pub, sub := bustest.Open(t, bustest.Config(t, kind))
			topic := bustest.Topic(t, bus.TopicEvents)
			col := bustest.Collect(t, ctx, sub, topic)

			msgs := encodeAll(t, recs)
			for _, m := range msgs[:250] {
				require.NoError(t, pub.Publish(topic, m))
			}
			for i := 250; i < len(msgs); i += 50 {
				require.NoError(t, pub.Publish(topic, msgs[i:i+50]...))
			}

			got := firstDeliveries(col.UniqueUUIDs(t, deliveryTimeout, len(recs)))
			require.Len(t, got, len(recs))
			lastVersion := map[string]uint64{}
			for i, m := range got {
				rec := recs[i]
				require.Equal(t, rec.ID.String(), m.UUID, "delivery %d in publish order", i)
				require.Equal(t, rec.Meta.CorrelationID.String(), m.Metadata.Get(bus.MetaCorrelationID))
				require.Equal(t, rec.Meta.CausationID.String(), m.Metadata.Get(bus.MetaCausationID))
				require.Equal(t, rec.Type, m.Metadata.Get(bus.MetaName))
				require.Equal(t, rec.Stream, m.Metadata.Get(bus.MetaStream))
				require.Equal(t, rec.Position.String(), m.Metadata.Get(bus.MetaPosition))
				back, err := bus.DecodeRecord(m)
				require.NoError(t, err)
				require.Equal(t, rec, back)
				_, err = bus.DecodeEvent(m)
				require.NoError(t, err)
				require.Greater(t, rec.Version, lastVersion[rec.Stream], "stream order")
				lastVersion[rec.Stream] = rec.Version
			}
			if n := len(col.Messages()) - len(recs); n > 0 {
				t.Logf("%s: %d redeliveries", kind, n)
			}
		})
	}
}

// TestRedeliveryKeepsOrder: a subscriber that nacks every message the first
// time gets it again before the next one, on every kind.
func TestRedeliveryKeepsOrder(t *testing.T) {
	recs := bustest.History(t, 30)[:30]
	for _, kind := range bustest.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*deliveryTimeout)
			defer cancel()
			pub, sub := bustest.Open(t, bustest.Config(t, kind))
			topic := bustest.Topic(t, bus.TopicEvents)
			ch, err := sub.Subscribe(ctx, topic)
			require.NoError(t, err)

			var (
				mu  sync.Mutex
				got []string
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				nacked := map[string]bool{}
				acked := 0
				for m := range ch {
					mu.Lock()
					got = append(got, m.UUID)
					mu.Unlock()
					if !nacked[m.UUID] {
						nacked[m.UUID] = true
						m.Nack()
						continue
					}
					m.Ack()
					if acked++; acked == len(recs) {
						return
					}
				}
			}()
			// gochannel's Publish blocks until the subscriber acks: publish
			// from another goroutine.
			pubErr := make(chan error, 1)
			go func() {
				for _, m := range encodeAll(t, recs) {
					if err := pub.Publish(topic, m); err != nil {
						pubErr <- err
						return
					}
				}
				pubErr <- nil
			}()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("not every message was acked in time")
			}
			require.NoError(t, <-pubErr)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, got, 2*len(recs))
			for i, rec := range recs {
				require.Equal(t, []string{rec.ID.String(), rec.ID.String()}, got[2*i:2*i+2], "message %d: nacked, then redelivered before the next", i)
			}
		})
	}
}

// TestConsumerGroupResumes: on the distributed buses, a consumer group that
// unsubscribes and subscribes again continues after what it acked, and
// another consumer group gets everything. (gochannel keeps nothing.)
func TestConsumerGroupResumes(t *testing.T) {
	recs := bustest.History(t, 40)[:40]
	for _, kind := range []bus.Kind{bus.KindNATS, bus.KindPostgres} {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*deliveryTimeout)
			defer cancel()
			cfg := bustest.Config(t, kind)
			pub, sub := bustest.Open(t, cfg)
			topic := bustest.Topic(t, bus.TopicEvents)
			msgs := encodeAll(t, recs)
			require.NoError(t, pub.Publish(topic, msgs[:20]...))

			first, stop := context.WithCancel(ctx)
			ch, err := sub.Subscribe(first, topic)
			require.NoError(t, err)
			next := func() *message.Message {
				t.Helper()
				select {
				case m := <-ch:
					return m
				case <-ctx.Done():
					t.Fatal("timeout")
					return nil
				}
			}
			for i := 0; i < 20; i++ {
				m := next()
				require.Equal(t, msgs[i].UUID, m.UUID)
				m.Ack()
			}
			// Message 20 arrives only once the acks before it are stored
			// (PostgreSQL commits a batch's offset before reading on).
			// Leave it unacked: it must come again.
			require.NoError(t, pub.Publish(topic, msgs[20]))
			require.Equal(t, msgs[20].UUID, next().UUID)
			stop()
			for range ch { // the subscription ends
			}

			require.NoError(t, pub.Publish(topic, msgs[21:]...))
			again := bustest.Collect(t, ctx, sub, topic)
			got := firstDeliveries(again.UniqueUUIDs(t, deliveryTimeout, 20))
			require.Len(t, got, 20)
			for i, m := range got {
				require.Equal(t, msgs[20+i].UUID, m.UUID, "the group resumes after its acks, with the unacked message first")
			}

			other := cfg
			other.Consumer = cfg.Consumer + "-other"
			_, sub2 := bustest.Open(t, other)
			all := bustest.Collect(t, ctx, sub2, topic)
			got = firstDeliveries(all.UniqueUUIDs(t, deliveryTimeout, len(recs)))
			require.Equal(t, msgs[0].UUID, got[0].UUID, "another group starts at the beginning")
		})
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, bus.Config{}.Validate())
	err := bus.Config{Kind: "kafka", Consumer: "a b", AckWait: -1, PollInterval: -1, NATSMaxAckPending: -1}.Validate()
	require.Error(t, err)
	for _, want := range []string{"kafka", "consumer", "AckWait", "PollInterval", "NATSMaxAckPending"} {
		require.ErrorContains(t, err, want)
	}
	require.ErrorContains(t, bus.Config{Kind: bus.KindNATS}.Validate(), "URL")
	require.ErrorContains(t, bus.Config{Kind: bus.KindPostgres, URL: "sqlite:x"}.Validate(), "postgres://")
	_, _, _, err = bus.Open(context.Background(), bus.Config{Kind: "kafka"})
	require.Error(t, err)
}

func TestOpenFailsWhenTheServerIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, _, err := bus.Open(ctx, bus.Config{Kind: bus.KindNATS, URL: "nats://127.0.0.1:1"})
	require.Error(t, err)
	_, _, _, err = bus.Open(ctx, bus.Config{Kind: bus.KindPostgres, URL: "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"})
	require.Error(t, err)
}

func TestNATSNames(t *testing.T) {
	require.Equal(t, "accessledger_events_v1", bus.NATSStreamName(bus.TopicEvents))
	require.Equal(t, "accessledger__accessledger_events_v1", bus.NATSConsumerName("accessledger", bus.TopicEvents))
	require.Equal(t, "a_b__x_y", bus.NATSConsumerName("a.b", "x>y"))
}
