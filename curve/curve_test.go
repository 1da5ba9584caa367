package curve_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/internal/zmqtest"
)

func TestGenerate_WritesCheckedFilesAndRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	kp, err := curve.Generate(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "alice.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v mode %v, want 0600", err, fi.Mode())
	}
	got, err := curve.LoadSecret(filepath.Join(dir, "alice.key"))
	if err != nil || got.Public != kp.Public || got.Secret != kp.Secret || got.Name != "alice" {
		t.Fatalf("LoadSecret = %+v, %v; want %+v", got, err, kp)
	}
	pub, err := curve.LoadPublic(filepath.Join(dir, "alice.pub"))
	if err != nil || pub.Key != kp.Public || pub.Name != "alice" {
		t.Fatalf("LoadPublic = %+v, %v", pub, err)
	}
	if _, err := curve.Generate(dir, "alice"); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("second Generate: %v, want a refusal", err)
	}
	for _, bad := range []string{"", "a/b", "..", "x\ny"} {
		if _, err := curve.Generate(dir, bad); err == nil {
			t.Errorf("Generate(%q) succeeded", bad)
		}
	}
}

func TestCheckZ85(t *testing.T) {
	public, _, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	if err := curve.CheckZ85(public); err != nil {
		t.Fatalf("a real key: %v", err)
	}
	for _, bad := range []string{
		"", public[:39], public + "0",
		"~" + public[1:],     // not in the alphabet
		"%%%%%" + public[5:], // a group past 2^32
	} {
		if err := curve.CheckZ85(bad); err == nil {
			t.Errorf("CheckZ85(%q) = nil", bad)
		}
	}
}

func TestLoadSecret_Refusals(t *testing.T) {
	dir := t.TempDir()
	kp, err := curve.Generate(dir, "k")
	if err != nil {
		t.Fatal(err)
	}
	other, err := curve.Generate(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "none.key"), "no such file"},
		{write("open.key", kp.Secret+"\n", 0o644), "chmod 600"},
		{write("group.key", kp.Secret+"\n", 0o640), "chmod 600"},
		{write("empty.key", "# nothing\n", 0o600), "no key"},
		{write("two.key", kp.Secret+"\n"+kp.Secret+"\n", 0o600), "more than one key"},
		{write("short.key", kp.Secret[:20]+"\n", 0o600), "40 Z85 characters"},
		{write("wrong.key", other.Secret+"\n", 0o600), "does not match"},
	} {
		if tc.path == filepath.Join(dir, "wrong.key") {
			write("wrong.pub", kp.Public+"\n", 0o644)
		}
		_, err := curve.LoadSecret(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("LoadSecret(%s) = %v, want an error naming the file and %q", tc.path, err, tc.want)
		}
	}
	if fi, _ := os.Stat(dir); fi.IsDir() {
		if _, err := curve.LoadSecret(dir); err == nil {
			t.Error("a folder loaded as a key")
		}
	}
}

func TestLoadClient_BothOrNeither(t *testing.T) {
	if c, err := curve.LoadClient("", ""); c != nil || err != nil {
		t.Fatalf("neither: %v %v", c, err)
	}
	if _, err := curve.LoadClient("b.pub", ""); err == nil || !strings.Contains(err.Error(), "--curve-key") {
		t.Errorf("broker key alone: %v", err)
	}
	if _, err := curve.LoadClient("", "a.key"); err == nil || !strings.Contains(err.Error(), "--broker-key") {
		t.Errorf("own key alone: %v", err)
	}
}

// TestProbe_FindsAnOpenDoor: a CURVE server whose context has no ZAP
// handler admits every key (libzmq's rule); Probe must say so. Its own
// context keeps it away from any handler of this process.
func TestProbe_FindsAnOpenDoor(t *testing.T) {
	ctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Term()
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetLinger(0)
	if err := curve.ApplyServer(s, curve.KeyPair{Public: public, Secret: secret}, "zmws-client.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := s.GetLastEndpoint()
	key, err := curve.NewProbeKey()
	if err != nil {
		t.Fatal(err)
	}
	err = curve.Probe(ep, zmq.DEALER, public, key, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "admitted a key no one authorized") {
		t.Fatalf("Probe of an open CURVE socket = %v, want it to refuse", err)
	}
	// Nothing listening: no handshake, an error too.
	if err := curve.Probe("tcp://127.0.0.1:1", zmq.DEALER, public, key, 200*time.Millisecond); err == nil {
		t.Error("Probe of a closed port = nil")
	}
}

// TestWatch_CloseNeverStallsLibzmq: libzmq sends monitor events with a
// blocking send from its I/O thread, so a watch that stopped reading while
// its socket still made events would stall every connection of the
// process. A socket keeps failing its handshake after its watch is closed;
// another connection must still get through.
func TestWatch_CloseNeverStallsLibzmq(t *testing.T) {
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	server, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	server.SetLinger(0)
	if err := curve.ApplyServer(server, curve.KeyPair{Public: public, Secret: secret}, "zmws-client.test"); err != nil {
		t.Fatal(err)
	}
	if err := server.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := server.GetLastEndpoint()
	ownPub, ownSec, _ := zmq.NewCurveKeypair()
	wrongPub, _, _ := zmq.NewCurveKeypair()
	own := curve.KeyPair{Public: ownPub, Secret: ownSec}

	failing, _ := zmq.NewSocket(zmq.DEALER)
	defer failing.Close()
	failing.SetLinger(0)
	failing.SetReconnectIvl(5 * time.Millisecond)
	failing.SetReconnectIvlMax(5 * time.Millisecond)
	if err := (&curve.Client{Broker: curve.Public{Key: wrongPub}, Own: own}).Apply(failing); err != nil {
		t.Fatal(err)
	}
	w, err := curve.WatchSocket(failing)
	if err != nil {
		t.Fatal(err)
	}
	if err := failing.Connect(ep); err != nil {
		t.Fatal(err)
	}
	zmqtest.Eventually(t, "the wrong key's handshake failed", 5*time.Second, func() bool { return w.Err() != nil })
	w.Close()
	time.Sleep(100 * time.Millisecond) // the failing socket goes on failing, every 5 ms

	good, _ := zmq.NewSocket(zmq.DEALER)
	defer good.Close()
	good.SetLinger(0)
	if err := (&curve.Client{Broker: curve.Public{Key: public}, Own: own}).Apply(good); err != nil {
		t.Fatal(err)
	}
	if err := good.Connect(ep); err != nil {
		t.Fatal(err)
	}
	good.SendMessage("hello")
	server.SetRcvtimeo(5 * time.Second)
	if msg, err := server.RecvMessage(0); err != nil || msg[1] != "hello" {
		t.Fatalf("a good connection after the watch closed: %q, %v (libzmq's I/O thread stalled?)", msg, err)
	}
}

// TestMonitor_UnreadEventsNeverStallLibzmq: events pile up while the
// reader is busy (a flood of connections); libzmq's I/O thread must not
// block on them, or every connection of the process stalls.
func TestMonitor_UnreadEventsNeverStallLibzmq(t *testing.T) {
	router, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	router.SetLinger(0)
	if err := router.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := router.GetLastEndpoint()
	mon, err := curve.Monitor(router, "inproc://zmws-test-monitor", zmq.EVENT_ACCEPTED|zmq.EVENT_DISCONNECTED)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	defer router.Monitor("", 0) // before the reader closes
	addr := strings.TrimPrefix(ep, "tcp://")
	for range 1500 { // 3,000 events, past libzmq's default high-water mark of 1,000
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	d, _ := zmq.NewSocket(zmq.DEALER)
	defer d.Close()
	d.SetLinger(0)
	if err := d.Connect(ep); err != nil {
		t.Fatal(err)
	}
	d.SendMessage("hello")
	router.SetRcvtimeo(5 * time.Second)
	if msg, err := router.RecvMessage(0); err != nil || msg[1] != "hello" {
		t.Fatalf("a connection after 3,000 unread monitor events: %q, %v (libzmq's I/O thread stalled?)", msg, err)
	}
}
