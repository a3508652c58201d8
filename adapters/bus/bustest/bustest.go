// Package bustest gives tests real buses of every kind: the in-process
// gochannel, NATS JetStream (the server named by $ACCESSLEDGER_TEST_NATS_URL)
// and PostgreSQL (a fresh schema from sqltest.Postgres), with topics and
// consumer groups of their own, and a Collector that records what a
// subscriber receives.
//
// Like sqltest.Postgres, NATS tests skip when the variable is unset and
// FAIL when it is set but the server cannot be reached, so a CI job that
// sets it cannot silently lose its NATS coverage.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// NATSEnv names the environment variable holding the URL of a NATS server
// with JetStream, e.g. nats://127.0.0.1:4222.
const NATSEnv = "ACCESSLEDGER_TEST_NATS_URL"

// Kinds lists every bus kind, for table-driven tests: run each in a subtest
// and get its configuration from Config (which skips NATS or PostgreSQL
// when their variable is unset).
func Kinds() []bus.Kind { return []bus.Kind{bus.KindGoChannel, bus.KindNATS, bus.KindPostgres} }

// NATSURL returns $ACCESSLEDGER_TEST_NATS_URL after checking that a
// JetStream server answers there. It skips the test when the variable is
// unset and fails it when the server does not answer.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := strings.TrimSpace(os.Getenv(NATSEnv))
	if u == "" {
		t.Skipf("NATS tests need a JetStream server: set %s, e.g. %s=nats://127.0.0.1:4222", NATSEnv, NATSEnv)
		return ""
	}
	nc, err := nats.Connect(u, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("bustest: %s is set but NATS at %s cannot be reached: %v", NATSEnv, u, err)
		return ""
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err == nil {
		_, err = js.AccountInfo()
	}
	if err != nil {
		t.Fatalf("bustest: NATS at %s has no JetStream (start nats-server with -js): %v", u, err)
	}
	return u
}

// Suffix returns a short random string for names of the test's own.
func Suffix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("bustest: random: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// Topic returns a topic of the test's own, base + ".t" + a random suffix.
// When NATS tests are on, the topic's JetStream stream is deleted when the
// test ends (whichever bus the test used).
func Topic(t testing.TB, base string) string {
	t.Helper()
	topic := base + ".t" + Suffix(t)
	if u := strings.TrimSpace(os.Getenv(NATSEnv)); u != "" {
		t.Cleanup(func() { deleteStream(t, u, topic) })
	}
	return topic
}

func deleteStream(t testing.TB, u, topic string) {
	nc, err := nats.Connect(u, nats.Timeout(5*time.Second))
	if err != nil {
		return // NATSURL reports an unreachable server
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	if err := js.DeleteStream(bus.NATSStreamName(topic)); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		t.Logf("bustest: delete stream of %s: %v", topic, err)
	}
}

// Config returns the configuration of a bus of kind for this test: NATS at
// NATSURL, PostgreSQL in a fresh schema (sqltest.Postgres), and a consumer
// group of the test's own. Short AckWait and PollInterval keep tests fast.
func Config(t testing.TB, kind bus.Kind) bus.Config {
	t.Helper()
	cfg := bus.Config{Kind: kind, Consumer: "test-" + Suffix(t), AckWait: 5 * time.Second, PollInterval: 20 * time.Millisecond}
	switch kind {
	case bus.KindNATS:
		cfg.URL = NATSURL(t)
	case bus.KindPostgres:
		cfg.URL = sqltest.Postgres(t)
	}
	return cfg
}

// Open opens the bus of cfg and closes it when the test ends.
func Open(t testing.TB, cfg bus.Config) (message.Publisher, message.Subscriber) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, sub, closeBus, err := bus.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("bustest: open %s bus: %v", cfg.Kind, err)
	}
	t.Cleanup(func() {
		if err := closeBus(); err != nil {
			t.Errorf("bustest: close %s bus: %v", cfg.Kind, err)
		}
	})
	return pub, sub
}

// Collector records the messages a subscription receives, acking each.
type Collector struct {
	mu     sync.Mutex
	msgs   []*message.Message
	notify chan struct{}
	done   chan struct{}
}

// Collect subscribes to topic and records every message until the test
// ends (or ctx ends). It fails the test if Subscribe fails.
func Collect(t testing.TB, ctx context.Context, sub message.Subscriber, topic string) *Collector {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		t.Fatalf("bustest: subscribe %s: %v", topic, err)
	}
	c := &Collector{notify: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for msg := range ch {
			c.mu.Lock()
			c.msgs = append(c.msgs, msg)
			close(c.notify)
			c.notify = make(chan struct{})
			c.mu.Unlock()
			msg.Ack()
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			t.Errorf("bustest: subscription of %s did not end", topic)
		}
	})
	return c
}

// Messages returns a copy of the messages received so far, in order.
func (c *Collector) Messages() []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

// Wait waits until done(messages so far) is true, and returns those
// messages; it fails the test after timeout.
func (c *Collector) Wait(t testing.TB, timeout time.Duration, done func([]*message.Message) bool) []*message.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		msgs := append([]*message.Message(nil), c.msgs...)
		notify := c.notify
		c.mu.Unlock()
		if done(msgs) {
			return msgs
		}
		select {
		case <-notify:
		case <-deadline.C:
			t.Fatalf("bustest: condition not met within %s (%d messages received)", timeout, len(msgs))
			return nil
		}
	}
}

// WaitN waits until at least n messages were received.
func (c *Collector) WaitN(t testing.TB, timeout time.Duration, n int) []*message.Message {
	t.Helper()
	return c.Wait(t, timeout, func(m []*message.Message) bool { return len(m) >= n })
}

// UniqueUUIDs waits until messages with n distinct UUIDs were received.
func (c *Collector) UniqueUUIDs(t testing.TB, timeout time.Duration, n int) []*message.Message {
	t.Helper()
	return c.Wait(t, timeout, func(m []*message.Message) bool {
		seen := make(map[string]struct{}, len(m))
		for _, msg := range m {
			seen[msg.UUID] = struct{}{}
		}
		return len(seen) >= n
	})
}
