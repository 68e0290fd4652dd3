// Command bench-io is the I/O workload runvirt-bench runs inside a
// container (runc or runvirt): sequential and random reads and writes on
// each directory given, timed with the clock of the machine it runs on.
//
//	bench-io [-reps 3] [-mib 32] [-randops 2000] [-randtime 1s] DIR...
//
// For every rep R and DIR it runs, in this order:
//
//	seqwrite  create DIR/w-R.dat, write MIB MiB in 1 MiB blocks, close (no fsync)
//	seqread   read DIR/seq-R.dat (MIB MiB, made by the host) in 1 MiB blocks
//	randwrite 4 KiB pwrites at random aligned offsets of DIR/rw-R.dat (made by the host)
//	randread  4 KiB preads at random aligned offsets of DIR/rr-R.dat (made by the host)
//
// The random tests stop after RANDOPS operations or RANDTIME, whichever
// comes first. One line per test on stdout:
//
//	IO dir=DIR test=seqread rep=0 bytes=33554432 ops=32 ns=123456789
//
// Build it static: CGO_ENABLED=0 go build ./bench/cmd/bench-io
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

const (
	seqBlock  = 1 << 20
	randBlock = 4 << 10
)

func main() {
	reps := flag.Int("reps", 3, "repetitions")
	mib := flag.Int("mib", 32, "file size in MiB")
	randOps := flag.Int("randops", 2000, "random operations per test, at most")
	randTime := flag.Duration("randtime", time.Second, "time per random test, at most")
	flag.Parse()
	size := int64(*mib) << 20
	for r := 0; r < *reps; r++ {
		for _, dir := range flag.Args() {
			rng := rand.New(rand.NewPCG(uint64(r), 42))
			tests := []struct {
				name string
				fn   func() (int64, int, error)
			}{
				{"seqwrite", func() (int64, int, error) { return seqWrite(filepath.Join(dir, fmt.Sprintf("w-%d.dat", r)), size) }},
				{"seqread", func() (int64, int, error) { return seqRead(filepath.Join(dir, fmt.Sprintf("seq-%d.dat", r))) }},
				{"randwrite", func() (int64, int, error) {
					return random(filepath.Join(dir, fmt.Sprintf("rw-%d.dat", r)), size, true, *randOps, *randTime, rng)
				}},
				{"randread", func() (int64, int, error) {
					return random(filepath.Join(dir, fmt.Sprintf("rr-%d.dat", r)), size, false, *randOps, *randTime, rng)
				}},
			}
			for _, t := range tests {
				t0 := time.Now()
				n, ops, err := t.fn()
				d := time.Since(t0)
				if err != nil {
					fmt.Fprintf(os.Stderr, "bench-io: %s %s: %v\n", t.name, dir, err)
					os.Exit(1)
				}
				fmt.Printf("IO dir=%s test=%s rep=%d bytes=%d ops=%d ns=%d\n", dir, t.name, r, n, ops, d.Nanoseconds())
			}
		}
	}
}

func seqWrite(path string, size int64) (int64, int, error) {
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, seqBlock)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	var n int64
	ops := 0
	for n < size {
		m, err := f.Write(buf)
		n += int64(m)
		ops++
		if err != nil {
			f.Close()
			return n, ops, err
		}
	}
	return n, ops, f.Close()
}

func seqRead(path string) (int64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, seqBlock)
	var n int64
	ops := 0
	for {
		m, err := f.Read(buf)
		n += int64(m)
		ops++
		if err == io.EOF {
			return n, ops, nil
		}
		if err != nil {
			return n, ops, err
		}
	}
}

func random(path string, size int64, write bool, maxOps int, maxTime time.Duration, rng *rand.Rand) (int64, int, error) {
	flags := os.O_RDONLY
	if write {
		flags = os.O_RDWR
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, randBlock)
	for i := range buf {
		buf[i] = byte(i*13 + 5)
	}
	blocks := size / randBlock
	deadline := time.Now().Add(maxTime)
	var n int64
	ops := 0
	for ops < maxOps && (ops%64 != 0 || time.Now().Before(deadline)) {
		off := rng.Int64N(blocks) * randBlock
		var m int
		if write {
			m, err = f.WriteAt(buf, off)
		} else {
			m, err = f.ReadAt(buf, off)
		}
		n += int64(m)
		ops++
		if err != nil {
			return n, ops, err
		}
	}
	return n, ops, nil
}
