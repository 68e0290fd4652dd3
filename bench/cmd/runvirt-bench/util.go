package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stats summarises a set of samples.
type stats struct {
	N                int
	Median, Min, Max float64
}

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

// cell formats "median [min–max]" with the given format for each number.
func (s stats) cell(format string) string {
	if s.N == 0 {
		return "—"
	}
	f := func(v float64) string { return fmt.Sprintf(format, v) }
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pssKiB is the Pss line of /proc/PID/smaps_rollup, in KiB.
func pssKiB(pid int) (int, error) { return rollup(pid, "Pss") }

// statusKiB is one kB line of /proc/PID/status (RssAnon, RssShmem), in KiB.
func statusKiB(pid int, key string) (int, error) { return procKiB(pid, "status", key) }

// rollup is one line of /proc/PID/smaps_rollup, in KiB.
func rollup(pid int, key string) (int, error) { return procKiB(pid, "smaps_rollup", key) }

// procKiB is the value of the "key: N kB" line of /proc/PID/file.
func procKiB(pid int, file, key string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key+":" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("pid %d: no %s in %s", pid, key, file)
}

// procInfo is one host process.
type procInfo struct {
	Pid, PPid int
	Comm      string
	Args      string
}

func listProcs() map[int]procInfo {
	ents, _ := os.ReadDir("/proc")
	ps := make(map[int]procInfo)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < l {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		ps[pid] = procInfo{Pid: pid, PPid: ppid, Comm: s[l+1 : r], Args: strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))}
	}
	return ps
}

// tree returns the roots and all their descendants.
func tree(ps map[int]procInfo, roots ...int) []procInfo {
	children := make(map[int][]int)
	for _, p := range ps {
		children[p.PPid] = append(children[p.PPid], p.Pid)
	}
	var out []procInfo
	seen := make(map[int]bool)
	var walk func(int)
	walk = func(pid int) {
		p, ok := ps[pid]
		if !ok || seen[pid] {
			return
		}
		seen[pid] = true
		out = append(out, p)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return out
}

// kind names a sandbox's host process for the breakdown.
func kind(p procInfo) string {
	switch {
	case strings.HasPrefix(p.Comm, "qemu"):
		return "qemu"
	case strings.HasPrefix(p.Comm, "virtiofsd"):
		return "virtiofsd"
	case strings.Contains(p.Args, " monitor "):
		return "runvirt monitor"
	case strings.Contains(p.Args, " stand-in "):
		return "runvirt stand-in"
	}
	return p.Comm
}

// sandboxPids reads a runvirt container's state: the monitor and the
// stand-in, the roots of every host process the sandbox has.
func sandboxPids(root, id string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return nil, err
	}
	var st struct {
		Monitor struct{ Pid int } `json:"monitor"`
		StandIn struct{ Pid int } `json:"stand_in"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range []int{st.Monitor.Pid, st.StandIn.Pid} {
		if p > 0 {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func cmdOut(name string, args ...string) string {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
