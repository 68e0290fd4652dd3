package runtime

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A stream needs a positive interval (a ticker of 0 would panic, and
// runc refuses it too); the refusal prints nothing.
func TestEventsRefusesNonPositiveInterval(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		var out bytes.Buffer
		err := Events(context.Background(), Globals{Root: t.TempDir()}, "c1", false, d, &out, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("interval %s: %v, want a must-be-positive error", d, err)
		}
		if out.Len() != 0 {
			t.Errorf("interval %s: printed %q", d, out.String())
		}
	}
}
