// Command bench-net is the network workload of `make netbench`, static so
// that it runs in a busybox container under runc and runvirt alike:
//
//	bench-net serve PORT            accept connections: stream sink or echo
//	bench-net stream HOST:PORT SECS send for SECS seconds; print MiB/s
//	bench-net rr HOST:PORT N        N 1-byte round trips; print the median
//	                                and 99th percentile in microseconds
//
// A connection's first byte says what it is: 's' a stream (the server reads
// to EOF and answers with the byte count), 'r' request/response (the server
// echoes every byte).
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: bench-net serve PORT | stream HOST:PORT SECS | rr HOST:PORT N")
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "stream":
		err = stream(os.Args[2], atoi(os.Args[3]))
	case "rr":
		err = rr(os.Args[2], atoi(os.Args[3]))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-net:", msg)
	os.Exit(1)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		fail("not a positive number: " + s)
	}
	return n
}

func serve(port string) error {
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c)
	}
}

func handle(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case 's':
		n, _ := io.Copy(io.Discard, c)
		binary.Write(c, binary.BigEndian, n)
	case 'r':
		io.Copy(c, c)
	}
}

func stream(addr string, secs int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	buf[0] = 's'
	start := time.Now()
	end := start.Add(time.Duration(secs) * time.Second)
	var sent int64
	first := true
	for time.Now().Before(end) {
		b := buf
		if !first {
			b[0] = 0
		}
		first = false
		n, err := c.Write(b)
		sent += int64(n)
		if err != nil {
			return err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return fmt.Errorf("read the byte count: %w", err)
	}
	took := time.Since(start).Seconds()
	if got != sent-1 {
		return fmt.Errorf("sent %d bytes, the server got %d", sent-1, got)
	}
	fmt.Printf("%.1f\n", float64(got)/took/(1<<20))
	return nil
}

func rr(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	if _, err := c.Write([]byte{'r'}); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	lat := make([]float64, 0, n)
	b := []byte{'x'}
	for i := 0; i < n+10; i++ {
		t := time.Now()
		if _, err := c.Write(b); err != nil {
			return err
		}
		if _, err := r.ReadByte(); err != nil {
			return err
		}
		if i >= 10 { // warm-up
			lat = append(lat, float64(time.Since(t).Microseconds()))
		}
	}
	slices.Sort(lat)
	fmt.Printf("%.0f %.0f\n", lat[len(lat)/2], lat[len(lat)*99/100])
	return nil
}
