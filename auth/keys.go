package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/BurntSushi/toml"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/curve"
)

// Role is what a key is for: submitting jobs (clients) or running them
// (workers). The broker's ZAP handler admits a key only on its role's socket.
type Role string

// Roles.
const (
	RoleClient Role = "client"
	RoleWorker Role = "worker"
)

// Key is one authorized public key.
type Key struct {
	Name   string
	Role   Role
	Public string // Z85
	Rights Rights
	// Source is the file the key came from, for messages.
	Source string
}

// KeySet is an immutable set of authorized keys, by raw public key and by
// name. Names are unique across roles. The broker knows a peer by its
// public key (Z85), which the ZAP handler returns as its User-Id: a key
// replaced under the same name is another peer.
type KeySet struct {
	byPublic map[string]*Key // raw 32-byte key
	byName   map[string]*Key
}

// Len is the number of keys.
func (s *KeySet) Len() int { return len(s.byName) }

// Named returns the key called name, or nil.
func (s *KeySet) Named(name string) *Key { return s.byName[name] }

// ByPublic returns the key with this raw (32-byte) public key, or nil.
func (s *KeySet) ByPublic(raw string) *Key { return s.byPublic[raw] }

// Names lists the keys' names, sorted.
func (s *KeySet) Names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *KeySet) add(k *Key) error {
	if k.Name == "" {
		return fmt.Errorf("%s: a key needs a name", k.Source)
	}
	if prev := s.byName[k.Name]; prev != nil {
		return fmt.Errorf("%s: key name %q is also used by %s; names must be unique", k.Source, k.Name, prev.Source)
	}
	raw := zmq.Z85decode(k.Public)
	if prev := s.byPublic[raw]; prev != nil {
		return fmt.Errorf("%s: key %q is the same public key as %q (%s)", k.Source, k.Name, prev.Name, prev.Source)
	}
	if err := k.Rights.Check(); err != nil {
		return fmt.Errorf("%s: key %q: %w", k.Source, k.Name, err)
	}
	if k.Role == RoleWorker && (k.Rights.Admin || k.Rights.Watch) {
		return fmt.Errorf("%s: key %q: admin and watch are rights of client keys, not of worker keys", k.Source, k.Name)
	}
	s.byName[k.Name] = k
	s.byPublic[raw] = k
	return nil
}

// KeySource says where a broker's authorized keys come from: a TOML file
// (one [[key]] entry per key, with its role and rights) and folders of
// .pub files, one for clients and one for workers. A key from a folder has
// the full rights of its role: every service, and for a client, admin and
// watch; rights narrower than that need the file.
type KeySource struct {
	File      string
	ClientDir string
	WorkerDir string
}

// Empty reports whether no source is named.
func (src KeySource) Empty() bool {
	return src.File == "" && src.ClientDir == "" && src.WorkerDir == ""
}

// fileKey is one [[key]] entry of a keys file.
type fileKey struct {
	Name       string `toml:"name"`
	Role       string `toml:"role"`
	Public     string `toml:"public"`
	PublicFile string `toml:"public_file"`
	Rights
}

// Load reads every source into a new KeySet. Any fault is an error naming
// the file: a key set is all or nothing.
func (src KeySource) Load() (*KeySet, error) {
	s := &KeySet{byPublic: map[string]*Key{}, byName: map[string]*Key{}}
	if src.File != "" {
		if err := s.loadFile(src.File); err != nil {
			return nil, err
		}
	}
	for _, d := range []struct {
		dir  string
		role Role
		flag string
	}{{src.ClientDir, RoleClient, "--client-keys"}, {src.WorkerDir, RoleWorker, "--worker-keys"}} {
		if d.dir == "" {
			continue
		}
		if err := s.loadDir(d.dir, d.role); err != nil {
			return nil, fmt.Errorf("%s: %w", d.flag, err)
		}
	}
	return s, nil
}

func (s *KeySet) loadFile(path string) error {
	var doc struct {
		Key []fileKey `toml:"key"`
	}
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		return fmt.Errorf("keys file %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("keys file %s: unknown keys %s (want name, role, public or public_file, services, admin, watch)", path, strings.Join(keys, ", "))
	}
	for i, fk := range doc.Key {
		where := fmt.Sprintf("keys file %s, key %d", path, i+1)
		if fk.Name != "" {
			where = fmt.Sprintf("keys file %s, key %q", path, fk.Name)
		}
		k := &Key{Name: fk.Name, Role: Role(fk.Role), Rights: fk.Rights, Source: where}
		if k.Role != RoleClient && k.Role != RoleWorker {
			return fmt.Errorf("%s: role %q: want client or worker", where, fk.Role)
		}
		switch {
		case fk.Public != "" && fk.PublicFile != "":
			return fmt.Errorf("%s: give public or public_file, not both", where)
		case fk.Public != "":
			if err := curve.CheckZ85(fk.Public); err != nil {
				return fmt.Errorf("%s: public: %w", where, err)
			}
			k.Public = fk.Public
		case fk.PublicFile != "":
			p := fk.PublicFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			pub, err := curve.LoadPublic(p)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			k.Public = pub.Key
		default:
			return fmt.Errorf("%s: needs public (a Z85 key) or public_file", where)
		}
		if err := s.add(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *KeySet) loadDir(dir string, role Role) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("keys folder: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pub") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		pub, err := curve.LoadPublic(path)
		if err != nil {
			return err
		}
		k := &Key{Name: pub.Name, Role: role, Public: pub.Key, Source: path}
		if role == RoleClient {
			k.Rights = Rights{Admin: true, Watch: true}
		}
		if err := s.add(k); err != nil {
			return err
		}
	}
	return nil
}

// Keys holds a broker's current KeySet and swaps it whole on Reload, so
// readers on any goroutine see the old set or the new one, never a mix.
// Its methods are safe for concurrent use.
type Keys struct {
	src KeySource
	cur atomic.Pointer[KeySet]
	gen atomic.Uint64
}

// ErrNoKeys is returned when CURVE is asked for but no key is authorized.
var ErrNoKeys = errors.New("no authorized keys: give --keys, --client-keys or --worker-keys")

// NewKeys loads src.
func NewKeys(src KeySource) (*Keys, error) {
	if src.Empty() {
		return nil, ErrNoKeys
	}
	set, err := src.Load()
	if err != nil {
		return nil, err
	}
	k := &Keys{src: src}
	k.cur.Store(set)
	k.gen.Store(1)
	return k, nil
}

// Reload reads the sources again and swaps the set in. On error the
// current set stays.
func (k *Keys) Reload() error {
	set, err := k.src.Load()
	if err != nil {
		return err
	}
	k.cur.Store(set)
	k.gen.Add(1)
	return nil
}

// Current returns the set in force.
func (k *Keys) Current() *KeySet { return k.cur.Load() }

// Generation changes each time the set is replaced.
func (k *Keys) Generation() uint64 { return k.gen.Load() }

// role returns the key whose public key (Z85) is user if it has role r.
func (k *Keys) role(user string, r Role) *Key {
	if key := k.cur.Load().byZ85(user); key != nil && key.Role == r {
		return key
	}
	return nil
}

// byZ85 returns the key with this public key in Z85, or nil.
func (s *KeySet) byZ85(public string) *Key {
	if curve.CheckZ85(public) != nil {
		return nil
	}
	return s.byPublic[zmq.Z85decode(public)]
}

// Name returns the name of the key whose public key (Z85) is user, or a
// short form of the key when the set no longer holds it.
func (k *Keys) Name(user string) string {
	if key := k.cur.Load().byZ85(user); key != nil {
		return key.Name
	}
	if len(user) > 8 {
		return "unlisted key " + user[:8] + "..."
	}
	return user
}

// MayOffer reports whether worker key user (its public key, Z85) may
// offer service.
func (k *Keys) MayOffer(user, service string) bool {
	key := k.role(user, RoleWorker)
	return key != nil && key.Rights.Allows(service)
}

// MaySubmit reports whether client key user may submit to service.
func (k *Keys) MaySubmit(user, service string) bool {
	key := k.role(user, RoleClient)
	return key != nil && key.Rights.Allows(service)
}

// MayAdmin reports whether client key user may administer.
func (k *Keys) MayAdmin(user string) bool {
	key := k.role(user, RoleClient)
	return key != nil && key.Rights.Admin
}
