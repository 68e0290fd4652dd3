package runtime

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A guest that floods its console leaves at most twice the cap on the
// host, and the newest output is what is kept, byte for byte.
func TestConsoleLogIsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(path+".1", []byte("an older vm's console\n"), 0o600)
	const max = 4096
	w, done, err := startConsoleLog(path, max, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var sent bytes.Buffer
	for i := 0; sent.Len() < 20*max; i++ {
		line := fmt.Sprintf("line %d of a flood %s\n", i, bytes.Repeat([]byte("x"), i%300))
		sent.WriteString(line)
		if _, err := w.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the copy did not end with the pipe")
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if len(cur) > max || len(old) != max {
		t.Errorf("console.log %d bytes, console.log.1 %d: want at most %d and exactly %d", len(cur), len(old), max, max)
	}
	kept := append(old, cur...)
	if !bytes.HasSuffix(sent.Bytes(), kept) {
		t.Errorf("the logs do not hold the newest %d bytes of the console", len(kept))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("console.log mode %v (%v), want 0600", fi.Mode(), err)
	}

	// Without rotation the older VM's rotation is gone all the same.
	os.WriteFile(path+".1", []byte("an older vm's console\n"), 0o600)
	w, done, err = startConsoleLog(path, max, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("booted\n")
	w.Close()
	<-done
	if b, _ := os.ReadFile(path); string(b) != "booted\n" || exists(path+".1") {
		t.Errorf("console.log %q, console.log.1 there: %v", b, exists(path+".1"))
	}
}

// A log that cannot be written any more is dropped, and the pipe is still
// drained: QEMU must never block on the guest's console.
func TestConsoleLogDrainsWhenBroken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "console.log")
	const max = 1024
	w, done, err := startConsoleLog(path, max, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The rotation's rename fails once the directory is gone.
	os.RemoveAll(dir)
	wrote := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, io.LimitReader(zeros{}, 4<<20))
		w.Close()
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writing the console blocked once its log broke")
	}
	<-done
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
