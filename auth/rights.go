package auth

import (
	"fmt"
	"path"
)

// Rights say what a client key or an HTTP token may do, or which services a
// worker key may offer. The zero value may submit to (or offer) every
// service and nothing more.
type Rights struct {
	// Services are glob patterns (path.Match syntax: *, ?, [a-z]) of the
	// services a client may submit to, or a worker may offer. Empty: all.
	Services []string `toml:"services"`
	// Admin allows the operations that reach other people's jobs: cancel,
	// retry, reload, and the introspection that shows jobs' parameters and
	// output (SERVER-JOBS, SERVER-ACTIVE, SERVER-QUEUE, SERVER-WORKERS).
	// Clients and tokens only.
	Admin bool `toml:"admin"`
	// Watch allows subscribing to the events socket. Clients only; admin
	// implies it.
	Watch bool `toml:"watch"`
}

// Check reports a pattern path.Match cannot use.
func (r Rights) Check() error {
	for _, p := range r.Services {
		if p == "" {
			return fmt.Errorf("empty service pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("service pattern %q: %w", p, err)
		}
	}
	return nil
}

// Allows reports whether service matches one of the patterns (every
// service when there are none). SYNC- and SYNC: prefixes are the caller's to
// strip: rights name services, not ways of calling them.
func (r Rights) Allows(service string) bool {
	if len(r.Services) == 0 {
		return true
	}
	for _, p := range r.Services {
		if ok, _ := path.Match(p, service); ok {
			return true
		}
	}
	return false
}

// MayWatch reports whether the events socket is open to these rights.
func (r Rights) MayWatch() bool { return r.Watch || r.Admin }
