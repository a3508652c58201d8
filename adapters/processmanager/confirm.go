// Publishes the process manager confirms: on a bus whose Publish returns
// once the subscribers acked (gochannel), an event that its subscription
// dropped while closing, or that nobody was subscribed to receive, returns
// from Publish as if it had been handled.

package processmanager

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/adapters/bus"
)

// ErrNotHandled is returned by a Confirming publisher's Publish when the
// process manager did not handle one of the events published: its
// subscription was closing or closed, or it was not yet subscribed.
var ErrNotHandled = errors.New("processmanager: the published events were not handled by the process manager")

// handledLog remembers the bus.TopicEvents messages the process manager's
// handlers handled without error (messages the router then acks): the
// UUIDs of the last ones, at least twice as many as the largest Publish
// confirmed (reserve) and at least minHandledKept.
type handledLog struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string // the remembered UUIDs, oldest first
	keep  int
}

// minHandledKept is how many handled messages are remembered at least.
const minHandledKept = 1024

// middleware records the UUID of each bus.TopicEvents message whose
// handling succeeded.
func (h *handledLog) middleware(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := next(msg)
		if err == nil && message.SubscribeTopicFromCtx(msg.Context()) == bus.TopicEvents {
			h.add(msg.UUID)
		}
		return out, err
	}
}

func (h *handledLog) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ids == nil {
		h.ids = map[string]struct{}{}
	}
	if _, ok := h.ids[id]; ok {
		return
	}
	h.ids[id] = struct{}{}
	h.order = append(h.order, id)
	for len(h.order) > max(h.keep, minHandledKept) {
		delete(h.ids, h.order[0])
		h.order[0] = ""
		h.order = h.order[1:]
	}
}

// reserve makes the log remember at least twice n messages, so that the n
// of one Publish are all still there when it returns (bus.TopicEvents has
// one publisher, the relay, which publishes one batch at a time).
func (h *handledLog) reserve(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keep = max(h.keep, 2*n)
}

// unhandled returns the first of msgs not remembered as handled.
func (h *handledLog) unhandled(msgs []*message.Message) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		if _, ok := h.ids[m.UUID]; !ok {
			return m.UUID, true
		}
	}
	return "", false
}

// Confirming returns a publisher that publishes through pub and checks,
// for bus.TopicEvents, that the process manager handled what was
// published: when pub's Publish returns without error but one of its
// messages was not handled by then, it returns ErrNotHandled.
//
// It is for a bus whose Publish blocks until every subscriber acked and
// keeps nothing for a subscriber that is absent or stopping: watermill's
// gochannel with BlockPublishUntilSubscriberAck, the engine's in-process
// bus, with the process manager as the only subscriber of
// bus.TopicEvents. There a message published while the process manager is
// not subscribed, or dropped by its subscription as the router closes (the
// router stopping on its own, or Run's context ending), returns from
// Publish without error; the outbox relay would count it published and
// its checkpoint would pass an event whose deadline was never recorded (a
// placement's end whose grace period would then never expire). Through
// Confirming the relay retries such a publish, and a relay that is
// stopping leaves the event after its checkpoint, to be published again
// at the next start.
//
// Every message of the Publish is checked, not only the last: as its
// subscription closes, gochannel may drop one message and still deliver a
// later one. On a bus that stores messages (NATS, PostgreSQL) Publish
// returning means stored, and the process manager may handle them much
// later: do not wrap those.
func (pm *ProcessManager) Confirming(pub message.Publisher) message.Publisher {
	return confirming{Publisher: pub, handled: &pm.handled}
}

type confirming struct {
	message.Publisher
	handled *handledLog
}

func (c confirming) Publish(topic string, msgs ...*message.Message) error {
	if topic != bus.TopicEvents || len(msgs) == 0 {
		return c.Publisher.Publish(topic, msgs...)
	}
	c.handled.reserve(len(msgs))
	if err := c.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	if id, missing := c.handled.unhandled(msgs); missing {
		return fmt.Errorf("%w (message %s, of %d published)", ErrNotHandled, id, len(msgs))
	}
	return nil
}
