// Publishes the process manager confirms: on a bus whose Publish returns
// once the subscribers acked (gochannel), an event that its subscription
// dropped while closing, or that nobody was subscribed to receive, returns
// from Publish as if it had been handled.

package processmanager

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/adapters/bus"
)

// ErrNotHandled is returned by a Confirming publisher's Publish when the
// process manager did not handle the last event published: its
// subscription was closing or closed, or it was not yet subscribed.
var ErrNotHandled = errors.New("processmanager: the published events were not handled by the process manager")

// handledLog remembers the last bus.TopicEvents message the process
// manager's handlers handled without error (a message the router then
// acks).
type handledLog struct{ last atomic.Pointer[string] }

// middleware records the UUID of each bus.TopicEvents message whose
// handling succeeded.
func (h *handledLog) middleware(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := next(msg)
		if err == nil && message.SubscribeTopicFromCtx(msg.Context()) == bus.TopicEvents {
			id := msg.UUID
			h.last.Store(&id)
		}
		return out, err
	}
}

func (h *handledLog) handled(id string) bool {
	last := h.last.Load()
	return last != nil && *last == id
}

// Confirming returns a publisher that publishes through pub and checks,
// for bus.TopicEvents, that the process manager handled what was
// published: when pub's Publish returns without error but the last of its
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
// The check relies on the bus handing the messages of one Publish to the
// process manager in order, one at a time (gochannel with
// BlockPublishUntilSubscriberAck does): once one is dropped, the
// subscription is closing and every later one is dropped too, so the last
// one handled means all were. On a bus that stores messages (NATS,
// PostgreSQL) Publish returning means stored, and the process manager may
// handle them much later: do not wrap those.
func (pm *ProcessManager) Confirming(pub message.Publisher) message.Publisher {
	return confirming{Publisher: pub, handled: &pm.handled}
}

type confirming struct {
	message.Publisher
	handled *handledLog
}

func (c confirming) Publish(topic string, msgs ...*message.Message) error {
	if err := c.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	if topic != bus.TopicEvents || len(msgs) == 0 {
		return nil
	}
	if last := msgs[len(msgs)-1].UUID; !c.handled.handled(last) {
		return fmt.Errorf("%w (message %s of %d)", ErrNotHandled, last, len(msgs))
	}
	return nil
}
