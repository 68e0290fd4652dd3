package cgroupv2

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func cpu(c specs.LinuxCPU) *specs.LinuxResources {
	return &specs.LinuxResources{CPU: &c}
}
func mem(m specs.LinuxMemory) *specs.LinuxResources {
	return &specs.LinuxResources{Memory: &m}
}
func pids(limit int64) *specs.LinuxResources {
	return &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
}

const mib = 1 << 20

// The cases marked "was" are where the host's and the guest's copies of
// this translation disagreed, or both disagreed with runc.
func TestWrites(t *testing.T) {
	tests := []struct {
		name string
		r    *specs.LinuxResources
		want []Write
	}{
		{"nil", nil, nil},
		{"empty", &specs.LinuxResources{}, nil},

		// was: host 70369281052672 (uint64 wrap), guest 1
		{"shares 1 clamps to 2", cpu(specs.LinuxCPU{Shares: u64(1)}), []Write{{"cpu.weight", "1"}}},
		{"shares 0 is unset", cpu(specs.LinuxCPU{Shares: u64(0)}), nil},
		{"shares 2", cpu(specs.LinuxCPU{Shares: u64(2)}), []Write{{"cpu.weight", "1"}}},
		{"shares 512", cpu(specs.LinuxCPU{Shares: u64(512)}), []Write{{"cpu.weight", "20"}}},
		{"shares 1024", cpu(specs.LinuxCPU{Shares: u64(1024)}), []Write{{"cpu.weight", "39"}}},
		{"shares 262144", cpu(specs.LinuxCPU{Shares: u64(262144)}), []Write{{"cpu.weight", "10000"}}},
		// was: host 38144 (the kernel refuses it: create failed), guest 10000
		{"shares above 262144 clamp", cpu(specs.LinuxCPU{Shares: u64(1000000)}), []Write{{"cpu.weight", "10000"}}},

		{"quota and period", cpu(specs.LinuxCPU{Quota: i64(50000), Period: u64(100000)}), []Write{{"cpu.max", "50000 100000"}}},
		{"quota alone takes the default period", cpu(specs.LinuxCPU{Quota: i64(50000)}), []Write{{"cpu.max", "50000 100000"}}},
		{"quota -1 with a period", cpu(specs.LinuxCPU{Quota: i64(-1), Period: u64(50000)}), []Write{{"cpu.max", "max 50000"}}},
		{"quota -1 alone", cpu(specs.LinuxCPU{Quota: i64(-1)}), []Write{{"cpu.max", "max 100000"}}},
		{"period alone", cpu(specs.LinuxCPU{Period: u64(20000)}), []Write{{"cpu.max", "max 20000"}}},
		// was: host "max 100000" (lifted a quota set before), guest nothing
		{"quota 0 and period 0 are unset", cpu(specs.LinuxCPU{Quota: i64(0), Period: u64(0)}), nil},
		{"cpuset", cpu(specs.LinuxCPU{Cpus: "0-1", Mems: "0"}), []Write{{"cpuset.cpus", "0-1"}, {"cpuset.mems", "0"}}},
		{"all of cpu in order", cpu(specs.LinuxCPU{Shares: u64(1024), Quota: i64(20000), Cpus: "1"}),
			[]Write{{"cpu.weight", "39"}, {"cpu.max", "20000 100000"}, {"cpuset.cpus", "1"}}},

		// pids: 0 is unset (runc's fs2: a new cgroup stays "max", an update
		// keeps the limit), negative is max. The host wrote "max" for 0 until
		// it stopped limiting pids; the guest wrote nothing.
		{"pids 0 is unset", pids(0), nil},
		{"pids -1 is max", pids(-1), []Write{{"pids.max", "max"}}},
		{"pids -2 is max", pids(-2), []Write{{"pids.max", "max"}}},
		{"pids 20", pids(20), []Write{{"pids.max", "20"}}},
		{"pids nil", &specs.LinuxResources{Pids: &specs.LinuxPids{}}, nil},

		// was: guest "0" (an instant OOM kill of a container updated with
		// --memory 0), runc leaves it
		{"memory 0 is unset", mem(specs.LinuxMemory{Limit: i64(0)}), nil},
		// was: guest no swap write
		{"memory -1 lifts swap too", mem(specs.LinuxMemory{Limit: i64(-1)}),
			[]Write{{"memory.swap.max", "max"}, {"memory.max", "max"}}},
		{"memory", mem(specs.LinuxMemory{Limit: i64(256 * mib)}), []Write{{"memory.max", "268435456"}}},
		{"swap -1 is max", mem(specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(-1)}),
			[]Write{{"memory.swap.max", "max"}, {"memory.max", "268435456"}}},
		{"swap equal to memory is no swap", mem(specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(256 * mib)}),
			[]Write{{"memory.swap.max", "0"}, {"memory.max", "268435456"}}},
		{"swap is memory+swap", mem(specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(512 * mib)}),
			[]Write{{"memory.swap.max", "268435456"}, {"memory.max", "268435456"}}},
		{"swap 0 is unset", mem(specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(0)}),
			[]Write{{"memory.max", "268435456"}}},
		// was: guest no swap write
		{"swap with memory -1 is all swap", mem(specs.LinuxMemory{Limit: i64(-1), Swap: i64(512 * mib)}),
			[]Write{{"memory.swap.max", "536870912"}, {"memory.max", "max"}}},
		// was: guest nothing (memory.low never set)
		{"reservation", mem(specs.LinuxMemory{Reservation: i64(64 * mib)}), []Write{{"memory.low", "67108864"}}},
		{"reservation -1", mem(specs.LinuxMemory{Reservation: i64(-1)}), []Write{{"memory.low", "max"}}},

		{"everything in order", &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(512 * mib), Reservation: i64(128 * mib)},
			CPU:    &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0", Mems: "0"},
			Pids:   &specs.LinuxPids{Limit: i64(-1)},
		}, []Write{
			{"pids.max", "max"},
			{"memory.swap.max", "268435456"},
			{"memory.max", "268435456"},
			{"memory.low", "134217728"},
			{"cpu.weight", "39"},
			{"cpu.max", "50000 100000"},
			{"cpuset.cpus", "0"},
			{"cpuset.mems", "0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Writes(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Writes = %v, want %v", got, tt.want)
			}
		})
	}
}

// A swap limit that says nothing about swap fails, as in runc, where the
// guest used to drop it silently and apply the rest.
func TestWritesRefusesSwap(t *testing.T) {
	tests := []struct {
		name string
		m    specs.LinuxMemory
		want string
	}{
		// was: guest memory.max only, swap dropped
		{"swap below memory", specs.LinuxMemory{Limit: i64(256 * mib), Swap: i64(128 * mib)}, "is below memory.limit"},
		// was: guest nothing
		{"swap without memory", specs.LinuxMemory{Swap: i64(512 * mib)}, "without a memory limit"},
		{"swap with memory 0", specs.LinuxMemory{Limit: i64(0), Swap: i64(512 * mib)}, "without a memory limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Writes(mem(tt.m))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Writes = %v, %v; want an error with %q", got, err, tt.want)
			}
		})
	}
}

func TestWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{
		0: 0, 1: 1, 2: 1, 3: 1, 512: 20, 1024: 39, 262143: 9999, 262144: 10000, 262145: 10000, 1 << 63: 10000,
	} {
		if got := Weight(shares); got != want {
			t.Errorf("Weight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestClampShares(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 2, 2: 2, 1024: 1024, 262144: 262144, 262145: 262144} {
		if got := ClampShares(shares); got != want {
			t.Errorf("ClampShares(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestController(t *testing.T) {
	for file, want := range map[string]string{"cpu.max": "cpu", "cpuset.cpus": "cpuset", "memory.swap.max": "memory", "pids.max": "pids"} {
		if got := (Write{File: file}).Controller(); got != want {
			t.Errorf("Controller(%s) = %s, want %s", file, got, want)
		}
	}
}
