package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/runvirt/runvirt/agent"
)

// Event is one line of `runvirt events`, shaped as runc's.
type Event struct {
	Type string       `json:"type"`
	ID   string       `json:"id"`
	Data *agent.Stats `json:"data,omitempty"`
}

// oomTick is how often Events checks the container's OOM kill count,
// whatever the stats interval: runc reports an OOM kill as it happens (from
// memory.events), and a client that waits for it must not wait an interval.
// One stats request to the agent is cheap.
const oomTick = 250 * time.Millisecond

// exitDrain is how long Events, seeing the container stopped, waits for the
// agent's answer to its wait on the init (which carries the OOM kill count
// at the init's exit) before it ends the stream without it.
const exitDrain = 2 * time.Second

// initExit is the agent's answer to Events' wait on the container's init.
type initExit struct {
	oomKills uint64
	err      error
}

// Events writes the container's stats as JSON events: once with stats,
// else every interval until the container stops, and an "oom" event each
// time its guest cgroup's OOM kill count rises. The count is checked every
// oomTick, and the agent's answer to a wait on the init gives the count when
// the init exited, so an OOM kill that ends the container (the init was the
// hog) is still reported before the stream ends.
func Events(ctx context.Context, g Globals, id string, statsOnce bool, interval time.Duration, w io.Writer, log *slog.Logger) error {
	if !statsOnce && interval <= 0 {
		return fmt.Errorf("events: --interval %s: must be positive", interval)
	}
	enc := json.NewEncoder(w)
	c, _, err := running(ctx, g, id, log)
	if err != nil {
		if statsOnce {
			return err
		}
		return nil // already stopped: nothing to listen to
	}
	client := c.client()
	st, err := client.Stats(ctx, id)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if err := enc.Encode(Event{Type: "stats", ID: id, Data: st}); err != nil {
		return err
	}
	if statsOnce {
		return nil
	}
	// runc reports the OOM kills that happen while it listens: the first
	// count is the baseline.
	seen := st.OOMKills
	report := func(n uint64) error {
		if n <= seen {
			return nil
		}
		seen = n
		return enc.Encode(Event{Type: "oom", ID: id})
	}

	// The wait starts after the baseline, so a kill between the two is in
	// its answer. Without a lifeline: ending the stream kills nothing.
	var exited chan initExit
	if waiter, err := client.WaitStream(ctx, id, "", false); err != nil {
		log.Debug("events: wait on the init", "container", id, "err", err)
	} else {
		defer waiter.Close()
		exited = make(chan initExit, 1)
		go func() {
			_, err := waiter.Result()
			n := waiter.OOMKills()
			if waiter.OOMKilled() {
				n = max(n, 1) // an agent that sends only the flag
			}
			exited <- initExit{oomKills: n, err: err}
		}()
	}
	// ended reports an OOM kill that the init's exit carried.
	ended := func(x initExit) error {
		if x.err != nil {
			log.Debug("events: wait on the init", "container", id, "err", x.err)
			return nil
		}
		return report(x.oomKills)
	}
	// finish ends the stream of a container seen stopped: the wait's answer
	// is on its way (or the VM is gone and the wait fails).
	finish := func() error {
		if exited == nil {
			return nil
		}
		select {
		case x := <-exited:
			return ended(x)
		case <-time.After(exitDrain):
			return nil
		case <-ctx.Done():
			return nil
		}
	}

	oom := time.NewTicker(oomTick)
	defer oom.Stop()
	stats := time.NewTicker(interval)
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case x := <-exited:
			return ended(x)
		case <-oom.C:
			// A failure here (the container just stopped, the agent is
			// busy) is left to the wait and to the stats tick.
			if st, err := client.Stats(ctx, id); err == nil {
				if err := report(st.OOMKills); err != nil {
					return err
				}
			}
		case <-stats.C:
			if _, _, err := running(ctx, g, id, log); err != nil {
				return finish()
			}
			st, err := client.Stats(ctx, id)
			if err != nil {
				if _, _, rerr := running(ctx, g, id, log); rerr != nil {
					return finish() // it stopped in between
				}
				return fmt.Errorf("events: %w", err)
			}
			if err := report(st.OOMKills); err != nil {
				return err
			}
			if err := enc.Encode(Event{Type: "stats", ID: id, Data: st}); err != nil {
				return err
			}
		}
	}
}
