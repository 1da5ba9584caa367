// Package notifytest plays systemd's side of sd_notify(3) in tests: a
// datagram socket named by NOTIFY_SOCKET that collects what the process
// under test says (READY=1, STATUS=..., STOPPING=1, WATCHDOG=1).
//
//	n := notifytest.Listen(t, false) // sets NOTIFY_SOCKET for the test
//	go run(ctx, ...)
//	n.Expect(t, "READY=1")
package notifytest

import (
	"crypto/rand"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Socket receives notifications. Its methods are for the test's goroutine.
type Socket struct {
	conn *net.UnixConn
	Name string // NOTIFY_SOCKET's value
	seen []string
}

// Listen makes the socket and points NOTIFY_SOCKET at it for the rest of
// the test (t.Setenv: not for parallel tests). abstract makes it a Linux
// abstract socket ("@name"), as systemd itself uses, instead of a file.
func Listen(t *testing.T, abstract bool) *Socket {
	t.Helper()
	s := New(t, abstract)
	t.Setenv("NOTIFY_SOCKET", s.Name)
	return s
}

// New makes the socket without setting NOTIFY_SOCKET: for a child process,
// whose environment says NOTIFY_SOCKET=s.Name.
func New(t *testing.T, abstract bool) *Socket {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = "@zmws-notifytest-" + rand.Text()
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Socket{conn: conn, Name: name}
}

// Next returns the next datagram, or fails the test after d.
func (s *Socket) Next(t *testing.T, d time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := s.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	n, _, err := s.conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("no notification within %v (before: %q): %v", d, s.seen, err)
	}
	msg := string(buf[:n])
	s.seen = append(s.seen, msg)
	return msg
}

// Expect skips datagrams until one holds a line equal to line (or, when
// line ends with "=", starting with it) and returns that datagram; it fails
// the test when none comes within 10 s.
func (s *Socket) Expect(t *testing.T, line string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := s.Next(t, time.Until(deadline))
		for _, l := range strings.Split(msg, "\n") {
			if l == line || strings.HasSuffix(line, "=") && strings.HasPrefix(l, line) {
				return msg
			}
		}
	}
}

// Seen is every datagram received so far, in order.
func (s *Socket) Seen() []string { return s.seen }
