package docker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// stateActions are the container events that change what a scan reads of
// a container (exec and health events, frequent, change none of it).
var stateActions = []string{"create", "start", "restart", "die", "stop", "pause", "unpause", "destroy", "rename", "update", "oom"}

// Event is a container event of a labelled container, in the domain's
// terms: which container, what happened, and when, by the engine's clock.
type Event struct {
	ContainerID string
	Action      string
	Time        time.Time
}

// Events streams the events of the containers carrying the instance label
// since a time of the engine's clock (zero: from now) until ctx ends or the
// stream breaks; the error channel then says why, once. Unlike every other
// call, the stream is not bounded by the engine's timeout: it lasts.
func (e *Engine) Events(ctx context.Context, since time.Time) (<-chan Event, <-chan error) {
	opts := client.EventsListOptions{Filters: make(client.Filters).Add("type", string(events.ContainerEventType)).
		Add("label", stale.LabelInstanceID).Add("event", stateActions...)}
	if !since.IsZero() {
		opts.Since = strconv.FormatInt(since.Unix(), 10) + "." + fmt.Sprintf("%09d", since.Nanosecond())
	}
	res := e.client.Events(ctx, opts)
	out := make(chan Event)
	errs := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-res.Messages:
				ev := Event{ContainerID: m.Actor.ID, Action: string(m.Action), Time: time.Unix(0, m.TimeNano)}
				if m.TimeNano == 0 {
					ev.Time = time.Unix(m.Time, 0)
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
			case err := <-res.Err:
				errs <- fmt.Errorf("docker events from %s: %s", RedactAddr(e.addr), redactIn(err, e.addr))
				return
			}
		}
	}()
	return out, errs
}
