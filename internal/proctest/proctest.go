// Package proctest finds processes by their command line in /proc, for
// tests that must show a job's processes are gone.
package proctest

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Sleepers returns the pids of the live processes running "sleep mark",
// directly or as the last words of their command line (setsid sleep mark).
func Sleepers(mark string) []int {
	want := []byte("sleep\x00" + mark + "\x00")
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || (!bytes.Equal(b, want) && !bytes.HasSuffix(b, append([]byte{0}, want...))) {
			continue
		}
		if !Gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Gone reports whether pid has exited (no such process, or a zombie).
func Gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// WaitSleepers polls /proc (bounded by d) until n sleepers of mark run,
// and fails the test with how many there are otherwise. Whatever is left
// at the end of the test is killed.
func WaitSleepers(t testing.TB, mark string, n int, d time.Duration) {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range Sleepers(mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(d)
	for {
		got := len(Sleepers(mark))
		if got == n {
			t.Logf("%d processes run sleep %s", got, mark)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes run sleep %s after %v; want %d", got, mark, d, n)
		}
		time.Sleep(20 * time.Millisecond) // polling /proc with a deadline
	}
}
