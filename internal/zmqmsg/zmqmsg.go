// Package zmqmsg sends and receives whole multipart ZeroMQ messages in one
// cgo call each, on sockets made with github.com/pebbe/zmq4.
//
// pebbe/zmq4 crosses into C five or six times per frame received
// (zmq_msg_init, zmq_msg_recv, zmq_msg_data, memcpy, zmq_msg_close, then a
// getsockopt for RCVMORE) and once per frame sent. An MDP job crosses the
// broker as four messages of five to seven frames: about ninety crossings
// per job in the broker alone, each with the Go runtime's cgo entry, exit
// and pointer checks. A Reader receives all of a message's frames in C and
// copies them into one Go buffer in the same call; a Writer sends a message
// from one Go buffer in one call.
//
// Like pebbe/zmq4 (by default), both retry a call that a signal
// interrupted (EINTR): the Go runtime preempts goroutines with SIGURG.
//
// Both reach the socket's libzmq handle through pebbe/zmq4's Socket, whose
// first field it is (go.mod pins the version; New checks the handle by
// asking libzmq the socket's type and comparing it with pebbe/zmq4's answer,
// so a layout change fails loudly instead of corrupting memory).
package zmqmsg

/*
#cgo pkg-config: libzmq
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct {
	zmq_msg_t *msgs;   // the kept frames, held until copied
	size_t *lens;      // their sizes
	int cap;           // of msgs and lens
	int kept;          // frames kept
	int held;          // of them, still held in msgs
	int frames;        // frames of the message after the skipped ones
	long long size;    // bytes of those frames
	size_t keptBytes;  // bytes of the kept frames
	int over;          // past maxFrames or maxBytes: later frames not kept
	int copied;        // the kept frames were copied into buf and released
	int userLen;       // length of user, -1 when the frame had no User-Id
	char user[256];
	int peerLen;       // length of peer, -1 when the frame had no Peer-Address
	char peer[64];
} zmws_rx;

static zmws_rx *zmws_rx_new(void) {
	zmws_rx *rx = calloc(1, sizeof(zmws_rx));
	return rx;
}

static void zmws_rx_release(zmws_rx *rx) {
	for (int i = 0; i < rx->held; i++) {
		zmq_msg_close(&rx->msgs[i]);
	}
	rx->held = 0;
}

static void zmws_rx_free(zmws_rx *rx) {
	zmws_rx_release(rx);
	free(rx->msgs);
	free(rx->lens);
	free(rx);
}

static int zmws_rx_grow(zmws_rx *rx) {
	int cap = rx->cap ? rx->cap * 2 : 16;
	zmq_msg_t *msgs = realloc(rx->msgs, cap * sizeof(zmq_msg_t));
	if (msgs == NULL) {
		return -1;
	}
	rx->msgs = msgs;
	size_t *lens = realloc(rx->lens, cap * sizeof(size_t));
	if (lens == NULL) {
		return -1;
	}
	rx->lens = lens;
	rx->cap = cap;
	return 0;
}

static void zmws_rx_copy(zmws_rx *rx, char *buf) {
	char *p = buf;
	for (int i = 0; i < rx->kept; i++) {
		if (rx->lens[i] > 0) {
			memcpy(p, zmq_msg_data(&rx->msgs[i]), rx->lens[i]);
		}
		p += rx->lens[i];
	}
	zmws_rx_release(rx);
	rx->copied = 1;
}

// zmws_prop copies m's property name into buf (at most cap bytes) and
// returns its length, or -1 when m has none.
static int zmws_prop(zmq_msg_t *m, const char *name, char *buf, size_t cap) {
	const char *v = zmq_msg_gets(m, name);
	if (v == NULL) {
		return -1;
	}
	size_t n = strlen(v);
	if (n > cap) {
		n = cap;
	}
	memcpy(buf, v, n);
	return (int)n;
}

// zmws_recv receives one whole message. The first skip frames (a ROUTER's
// routing id) are always kept and not counted against maxFrames and
// maxBytes (0: no bound); past a bound, frames are received and dropped.
// The kept frames are copied into buf when they fit in bufcap, else held
// for zmws_rx_copy. Returns 0, or -1 with errno set (nothing kept).
static int zmws_recv(void *sock, int flags, zmws_rx *rx, int skip, int maxFrames, long long maxBytes,
	int props, char *buf, size_t bufcap) {
	zmws_rx_release(rx);
	rx->kept = 0;
	rx->frames = 0;
	rx->size = 0;
	rx->keptBytes = 0;
	rx->over = 0;
	rx->copied = 0;
	rx->userLen = -1;
	rx->peerLen = -1;
	int nomem = 0;
	for (int i = 0;; i++) {
		zmq_msg_t scratch;
		zmq_msg_t *m = &scratch;
		if (!nomem && rx->kept == rx->cap && zmws_rx_grow(rx) != 0) {
			nomem = 1; // receive and drop the rest of the message
		}
		if (!nomem) {
			m = &rx->msgs[rx->kept];
		}
		zmq_msg_init(m);
		int rc;
		// EINTR: a signal (the Go runtime's SIGURG) landed in one of
		// libzmq's system calls before anything was received; try again.
		while ((rc = zmq_msg_recv(m, sock, flags)) < 0 && errno == EINTR) {
		}
		if (rc < 0) {
			int e = errno;
			zmq_msg_close(m);
			zmws_rx_release(rx);
			rx->kept = 0;
			errno = e;
			return -1;
		}
		size_t len = zmq_msg_size(m);
		int more = zmq_msg_more(m);
		int keep = !nomem;
		if (i >= skip) {
			if ((props & 1) && i == skip) {
				rx->userLen = zmws_prop(m, "User-Id", rx->user, sizeof(rx->user));
			}
			if ((props & 2) && i == skip) {
				rx->peerLen = zmws_prop(m, "Peer-Address", rx->peer, sizeof(rx->peer));
			}
			rx->frames++;
			rx->size += (long long)len;
			if (!rx->over && ((maxFrames > 0 && rx->frames > maxFrames) || (maxBytes > 0 && rx->size > maxBytes))) {
				rx->over = 1;
			}
			if (rx->over) {
				keep = 0;
			}
		}
		if (keep) {
			rx->lens[rx->kept] = len;
			rx->keptBytes += len;
			rx->kept++;
			rx->held++;
		} else {
			zmq_msg_close(m);
		}
		if (!more) {
			break;
		}
	}
	if (nomem) {
		zmws_rx_release(rx);
		rx->kept = 0;
		errno = ENOMEM;
		return -1;
	}
	if (rx->keptBytes <= bufcap) {
		zmws_rx_copy(rx, buf);
	}
	return 0;
}

// zmws_send sends n frames, one after the other in buf, as one message.
static int zmws_send(void *sock, int flags, const char *buf, const size_t *lens, int n) {
	const char *p = buf;
	for (int i = 0; i < n; i++) {
		int f = i < n - 1 ? flags | ZMQ_SNDMORE : flags;
		int rc;
		// EINTR: interrupted before anything was sent; try again.
		while ((rc = zmq_send(sock, p, lens[i], f)) < 0 && errno == EINTR) {
		}
		if (rc < 0) {
			return -1;
		}
		p += lens[i];
	}
	return 0;
}

static int zmws_type(void *sock) {
	int t = -1;
	size_t size = sizeof(t);
	if (zmq_getsockopt(sock, ZMQ_TYPE, &t, &size) != 0) {
		return -1;
	}
	return t;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// scratchSize is how many bytes a message may have to be copied out in
// the receiving call itself; a larger one takes a second call.
const scratchSize = 64 << 10

// handle is sock's libzmq socket: the first field of pebbe/zmq4's Socket,
// nil once the socket is closed.
func handle(sock *zmq.Socket) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(sock))
}

// Check reports whether sock's libzmq handle can be reached: libzmq's
// answer to ZMQ_TYPE through it is pebbe/zmq4's.
func Check(sock *zmq.Socket) error {
	want, err := sock.GetType()
	if err != nil {
		return err
	}
	h := handle(sock)
	if h == nil {
		return zmq.ErrorSocketClosed
	}
	if got := C.zmws_type(h); got != C.int(want) {
		return fmt.Errorf("zmqmsg: socket handle not found in pebbe/zmq4's Socket (type %d, want %d): its layout changed", int(got), int(want))
	}
	return nil
}

// errno turns a cgo call's error into the zmq.Errno pebbe/zmq4 returns.
func errno(err error) error {
	var e syscall.Errno
	if errors.As(err, &e) {
		return zmq.Errno(e)
	}
	return err
}

// Bounds limit what a Reader keeps of one message; 0 is no bound. Frames
// past a bound are received and dropped, and Message.Over says so.
type Bounds struct {
	Frames int
	Bytes  int64
}

// Message is what a Reader received.
type Message struct {
	// Frames are the frames kept, each with its own capacity (appending
	// to one does not write into the next).
	Frames [][]byte
	// User is the User-Id property of the first frame after the skipped
	// ones (the ZAP handler's, with CURVE), when asked for (PropUser).
	User string
	// Peer is its Peer-Address property, the peer's IP address on a TCP
	// connection ("" on inproc and IPC), when asked for (PropPeer).
	Peer string
	// Over is set when the message was past the Bounds; Count and Size are
	// then the whole message's frames and bytes after the skipped ones.
	Over  bool
	Count int
	Size  int64
}

// Reader receives whole messages. It is not safe for concurrent use; one
// Reader serves any number of sockets used from one goroutine.
type Reader struct {
	rx      *C.zmws_rx
	scratch []byte
}

// NewReader returns a Reader; Close frees it.
func NewReader() *Reader {
	return &Reader{rx: C.zmws_rx_new(), scratch: make([]byte, scratchSize)}
}

// Close frees the Reader's C memory.
func (r *Reader) Close() {
	if r.rx != nil {
		C.zmws_rx_free(r.rx)
		r.rx = nil
	}
}

// Props says which message properties Recv reads.
type Props int

const (
	PropUser Props = 1 << iota // Message.User
	PropPeer                   // Message.Peer
)

// Recv receives one message from sock with flags (zmq.DONTWAIT or 0). The
// first skip frames (1: a ROUTER's routing id) are kept outside the bounds;
// props says which properties of the frame after them are read.
func (r *Reader) Recv(sock *zmq.Socket, flags zmq.Flag, skip int, b Bounds, props Props) (Message, error) {
	h := handle(sock)
	if h == nil {
		return Message{}, zmq.ErrorSocketClosed
	}
	rc, err := C.zmws_recv(h, C.int(flags), r.rx, C.int(skip), C.int(b.Frames), C.longlong(b.Bytes), C.int(props),
		(*C.char)(unsafe.Pointer(&r.scratch[0])), C.size_t(len(r.scratch)))
	if rc < 0 {
		return Message{}, errno(err)
	}
	rx := r.rx
	n := int(rx.keptBytes)
	data := make([]byte, n)
	if rx.copied != 0 {
		copy(data, r.scratch[:n])
	} else {
		C.zmws_rx_copy(rx, (*C.char)(unsafe.Pointer(&data[0])))
	}
	kept := int(rx.kept)
	m := Message{Frames: make([][]byte, kept), Over: rx.over != 0, Count: int(rx.frames), Size: int64(rx.size)}
	lens := unsafe.Slice(rx.lens, kept)
	off := 0
	for i := range m.Frames {
		end := off + int(lens[i])
		m.Frames[i] = data[off:end:end]
		off = end
	}
	if props&PropUser != 0 && rx.userLen > 0 {
		m.User = C.GoStringN(&rx.user[0], rx.userLen)
	}
	if props&PropPeer != 0 && rx.peerLen > 0 {
		m.Peer = C.GoStringN(&rx.peer[0], rx.peerLen)
	}
	return m, nil
}

// Writer sends whole messages. It is not safe for concurrent use; one
// Writer serves any number of sockets used from one goroutine.
type Writer struct {
	buf  []byte
	lens []C.size_t
}

// Send sends frames as one message on sock with flags (zmq.DONTWAIT or
// 0). An error on the first frame (EAGAIN, EHOSTUNREACH) means nothing
// was sent.
func (w *Writer) Send(sock *zmq.Socket, flags zmq.Flag, frames [][]byte) error {
	w.buf, w.lens = w.buf[:0], w.lens[:0]
	return w.send(sock, flags, frames)
}

// SendTo sends the routing id to, then frames, as one message on a ROUTER.
func (w *Writer) SendTo(sock *zmq.Socket, flags zmq.Flag, to string, frames [][]byte) error {
	w.buf = append(w.buf[:0], to...)
	w.lens = append(w.lens[:0], C.size_t(len(to)))
	return w.send(sock, flags, frames)
}

func (w *Writer) send(sock *zmq.Socket, flags zmq.Flag, frames [][]byte) error {
	h := handle(sock)
	if h == nil {
		return zmq.ErrorSocketClosed
	}
	for _, f := range frames {
		w.buf = append(w.buf, f...)
		w.lens = append(w.lens, C.size_t(len(f)))
	}
	if len(w.lens) == 0 {
		return errors.New("zmqmsg: a message needs a frame")
	}
	if cap(w.buf) == 0 {
		w.buf = make([]byte, 0, 64)
	}
	buf := unsafe.Pointer(unsafe.SliceData(w.buf[:cap(w.buf)]))
	if rc, err := C.zmws_send(h, C.int(flags), (*C.char)(buf), &w.lens[0], C.int(len(w.lens))); rc < 0 {
		return errno(err)
	}
	// A huge message leaves no huge buffer behind.
	if cap(w.buf) > 4*scratchSize {
		w.buf = nil
	}
	return nil
}
