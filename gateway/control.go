package gateway

import (
	"net/http"
	"strings"

	"github.com/zmws/zmws/protocol"
)

// control reads a path of the control routes, an admin's:
//
//	POST /services/{name}/pause    SERVER-PAUSE: jobs queue, none is dispatched
//	POST /services/{name}/resume   SERVER-RESUME: the end of a pause or drain
//	POST /services/{name}/drain    SERVER-DRAIN of a service
//	POST /workers/{identity}/drain SERVER-DRAIN of a worker (or HOST:PID)
//
// It returns the SERVER- service and the name, or "" for another path.
func control(path string) (service, name string) {
	rest, isService := strings.CutPrefix(path, "/services/")
	if !isService {
		rest = strings.TrimPrefix(path, "/workers/")
	}
	name, op, ok := strings.Cut(rest, "/")
	if !ok || name == "" || strings.Contains(op, "/") {
		return "", ""
	}
	switch {
	case op == "drain":
		return protocol.ServerDrain, name
	case isService && op == "pause":
		return protocol.ServerPause, name
	case isService && op == "resume":
		return protocol.ServerResume, name
	}
	return "", ""
}

// serveControl answers the control routes with the broker's JSON: the
// service, or the workers drained.
func (g *Gateway) serveControl(w http.ResponseWriter, r *http.Request, arg string) {
	service, name, _ := strings.Cut(arg, "/")
	body, err := g.b.Query(r.Context(), service, []byte(name))
	if err != nil {
		g.fail(w, r, err)
		return
	}
	writeRaw(w, body)
}
