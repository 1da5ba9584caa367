package gateway

import (
	"bytes"
	_ "embed" // the page's files
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zmws/zmws/protocol"
)

// The web page (docs/UI.md): plain HTML, CSS and one script, embedded, no
// build step. It reads the JSON routes with the token the user typed and
// follows /ui/events, applying events to what it fetched.

// The page's files, embedded at build time (a missing one fails the build).
var (
	//go:embed ui/index.html
	uiIndex []byte
	//go:embed ui/app.js
	uiScript []byte
	//go:embed ui/app.css
	uiStyle []byte
	//go:embed ui/favicon.svg
	uiIcon []byte
)

// uiAsset is one embedded file of the page.
type uiAsset struct {
	body  []byte
	ctype string
	etag  string
}

func newAsset(body []byte, ctype string) uiAsset {
	return uiAsset{body: body, ctype: ctype, etag: fmt.Sprintf(`"%x"`, fnv(body))}
}

// uiAssets maps paths to the page's files (never changed): / and /ui/ are
// the page.
var uiAssets = map[string]uiAsset{
	"/":               newAsset(uiIndex, "text/html; charset=utf-8"),
	"/ui/":            newAsset(uiIndex, "text/html; charset=utf-8"),
	"/ui/app.js":      newAsset(uiScript, "text/javascript; charset=utf-8"),
	"/ui/app.css":     newAsset(uiStyle, "text/css; charset=utf-8"),
	"/ui/favicon.svg": newAsset(uiIcon, "image/svg+xml"),
}

// fnv is the 64-bit FNV-1a hash of b, for ETags.
func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// contentSecurityPolicy lets the page run its own script and style only:
// no inline script, no eval, no other origin, no framing. Data is put on
// the page as text (textContent), never as markup; this is the fence
// behind that.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// setPageHeaders sets the headers every answer of the page carries.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// serveUI answers GET / and /ui/...: the page's files. They hold no data,
// so they need no token (a browser cannot send one with a navigation); what
// the page shows comes from the routes that do.
func (g *Gateway) serveUI(w http.ResponseWriter, r *http.Request) {
	a, ok := uiAssets[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, "no such path: "+r.URL.Path+" (the page is at /)")
		return
	}
	h := w.Header()
	setPageHeaders(h)
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// eventsPing is how often an idle event stream gets a comment line, so
// proxies and browsers keep it open and a gone reader is noticed.
const eventsPing = 15 * time.Second

// serveEvents answers GET /ui/events: the broker's job events as
// Server-Sent Events (text/event-stream). The stream starts with a "ready"
// event once the subscription is made (take snapshots after it); each job
// event is an event named after it (queued, started, completed, failed,
// requeued) with the broker's JSON as data; "resync" says events were lost
// (this reader was too slow, or the broker's socket failed): fetch again.
func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Events == nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "this gateway relays no events (it has no events endpoint)")
		return
	}
	h := w.Header()
	setEventHeaders := func() {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Accel-Buffering", "no")
	}
	if r.Method == http.MethodHead {
		setEventHeaders()
		w.WriteHeader(http.StatusOK)
		return
	}
	l, cancel, err := g.cfg.Events.Subscribe()
	if err != nil {
		if errors.Is(err, ErrTooManyListeners) {
			g.log.Warn().Int("listeners", g.cfg.Events.cfg.MaxListeners).Msg("event stream refused: too many")
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, codeBusy,
				fmt.Sprintf("%d event streams are open already; try again later", g.cfg.Events.cfg.MaxListeners))
			return
		}
		g.fail(w, r, err)
		return
	}
	defer cancel()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // a stream outlives ReadTimeout; see serveSync
	setEventHeaders()
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	send := func() error {
		// A reader that takes nothing for this long is cut off; the
		// others, and the hub, never wait for it.
		rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err == nil {
			err = rc.Flush()
		}
		return err
	}
	buf.WriteString("retry: 2000\nevent: ready\ndata: {}\n\n")
	if send() != nil {
		return
	}
	ping := time.NewTicker(eventsPing)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-l.C:
			writeEvent(&buf, ev)
			// Send what has queued up meanwhile in the same write.
			for n := 0; n < 64 && len(l.C) > 0; n++ {
				writeEvent(&buf, <-l.C)
			}
		case <-l.Resync:
			buf.WriteString("event: resync\ndata: {}\n\n")
		case <-ping.C:
			buf.WriteString(": ping\n\n")
		}
		if send() != nil {
			return
		}
	}
}

// writeEvent appends ev to buf as one Server-Sent Event. JSON has no
// newlines, so one data line holds it.
func writeEvent(buf *bytes.Buffer, ev protocol.Event) {
	data, err := json.Marshal(ev)
	if err != nil {
		return // cannot happen: an Event always encodes
	}
	name := ev.Event
	switch name {
	case protocol.EventQueued, protocol.EventStarted, protocol.EventCompleted, protocol.EventFailed, protocol.EventRequeued:
	default:
		name = "job" // a name of a newer broker: still a job event
	}
	buf.WriteString("event: ")
	buf.WriteString(name)
	buf.WriteString("\ndata: ")
	buf.Write(data)
	buf.WriteString("\n\n")
}
