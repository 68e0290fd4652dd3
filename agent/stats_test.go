package agent

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The JSON names are runc's (types/events.go); clients parse them.
func TestStatsJSONNames(t *testing.T) {
	st := Stats{
		CPU: CPU{
			Usage:      CPUUsage{Total: 3000, Kernel: 1000, User: 2000},
			Throttling: Throttling{Periods: 5, ThrottledPeriods: 2, ThrottledTime: 7000},
		},
		Memory: Memory{
			Cache: 4096,
			Usage: MemoryEntry{Limit: 1 << 20, Usage: 8192, Max: 16384, Failcnt: 1},
			Raw:   map[string]uint64{"file": 4096},
		},
		Pids: Pids{Current: 2, Limit: 10},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cpu":{"usage":{"total":3000,"kernel":1000,"user":2000},` +
		`"throttling":{"periods":5,"throttledPeriods":2,"throttledTime":7000}},` +
		`"memory":{"cache":4096,"usage":{"limit":1048576,"usage":8192,"max":16384,"failcnt":1},` +
		`"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0},` +
		`"raw":{"file":4096}},"pids":{"current":2,"limit":10}}`
	if string(b) != want {
		t.Errorf("stats JSON\n got %s\nwant %s", b, want)
	}
}

// fakeAgent answers every stream with resp and hands the request it read
// to got.
func fakeAgent(resp Response, got chan<- Request) func(context.Context) (net.Conn, error) {
	return func(context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		go func() {
			defer guest.Close()
			var req Request
			if ReadFrame(guest, &req) != nil {
				return
			}
			got <- req
			WriteFrame(guest, resp)
		}()
		return host, nil
	}
}

func TestClientStatsAndUpdate(t *testing.T) {
	ctx := context.Background()
	got := make(chan Request, 1)
	want := &Stats{Pids: Pids{Current: 3}}
	c := &Client{Dial: fakeAgent(Response{Stats: want}, got)}
	st, err := c.Stats(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if req := <-got; req.Op != OpStats || req.Container != "c1" {
		t.Errorf("request = %+v", req)
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}

	limit := int64(64 << 20)
	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	c.Dial = fakeAgent(Response{}, got)
	if err := c.Update(ctx, "c1", r); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if req.Op != OpUpdate || req.Resources == nil || req.Resources.Memory == nil || *req.Resources.Memory.Limit != limit {
		t.Errorf("update request = %+v", req)
	}

	// An answer without stats is an error, not a nil dereference later.
	c.Dial = fakeAgent(Response{}, got)
	if _, err := c.Stats(ctx, "c1"); err == nil {
		t.Error("Stats with an empty response: want an error")
	}
	<-got
}

func TestClientPauseResumeErrors(t *testing.T) {
	got := make(chan Request, 1)
	c := &Client{Dial: fakeAgent(Response{Error: "container not paused", ErrorKind: ErrKindState}, got)}
	err := c.Resume(context.Background(), "c1")
	if re, ok := err.(*RemoteError); !ok || re.Kind != ErrKindState {
		t.Errorf("Resume = %v, want a state error", err)
	}
	if req := <-got; req.Op != OpResume {
		t.Errorf("op = %q", req.Op)
	}
	c.Dial = fakeAgent(Response{}, got)
	if err := c.Pause(context.Background(), "c1"); err != nil {
		t.Error(err)
	}
	if req := <-got; req.Op != OpPause {
		t.Errorf("op = %q", req.Op)
	}
}
