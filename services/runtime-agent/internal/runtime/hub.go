package runtime

import (
	"context"
	"log/slog"
	"sync"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Hub fans events out to subscribers. Runtimes that observe their
// workloads themselves (process supervision, containerd restart policy)
// publish here, and Events subscribes here, which makes a subscription
// active the moment Subscribe returns.
type Hub struct {
	log  *slog.Logger
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// hubBuffer is how many events a slow subscriber may lag before events are
// dropped for it (and a warning logged): a stuck reader must not stall the
// supervisor that publishes.
const hubBuffer = 256

// NewHub returns an empty hub that logs dropped events to log.
func NewHub(log *slog.Logger) *Hub {
	return &Hub{log: log, subs: map[chan Event]struct{}{}}
}

// Publish hands ev to every subscriber without blocking.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- ev:
		default:
			h.log.Warn("dropping runtime event for slow subscriber", logkey.Kind, ev.Kind, logkey.Workload, ev.Name)
		}
	}
}

// Subscribe returns a stream of every event published from now until ctx
// ends.
func (h *Hub) Subscribe(ctx context.Context) *Stream[Event] {
	c := make(chan Event, hubBuffer)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return Produce(ctx, 0, func(ctx context.Context, send func(Event) bool) error {
		defer func() {
			h.mu.Lock()
			delete(h.subs, c)
			h.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-c:
				if !send(ev) {
					return nil
				}
			}
		}
	})
}
