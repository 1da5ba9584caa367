// Package curvetest makes CURVE key files for tests: a broker key pair and
// named client and worker keys with chosen rights, written to a temporary
// folder as zmws keygen and a keys file would have them.
package curvetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/curve"
)

// Fixture is a folder of key files.
type Fixture struct {
	Dir    string
	Broker curve.KeyPair
	// KeysFile is the keys file (TOML) listing the authorized keys.
	KeysFile string
	pairs    map[string]curve.KeyPair
}

// Entry is one authorized key of the keys file.
type Entry struct {
	Name   string
	Role   auth.Role
	Rights auth.Rights
	// Pair names the key pair whose public key the entry holds (default:
	// Name), to give a name another key.
	Pair string
}

// New makes the broker's pair, a pair for each entry and for each name in
// unlisted (keys no one authorized), and a keys file of the entries.
func New(t testing.TB, entries []Entry, unlisted ...string) *Fixture {
	t.Helper()
	f := &Fixture{Dir: t.TempDir(), pairs: map[string]curve.KeyPair{}}
	var err error
	if f.Broker, err = curve.Generate(f.Dir, "broker"); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f.pair(t, e.Name)
	}
	for _, n := range unlisted {
		f.pair(t, n)
	}
	f.KeysFile = filepath.Join(f.Dir, "keys.toml")
	f.WriteKeys(t, entries)
	return f
}

func (f *Fixture) pair(t testing.TB, name string) {
	t.Helper()
	kp, err := curve.Generate(f.Dir, name)
	if err != nil {
		t.Fatal(err)
	}
	f.pairs[name] = kp
}

// WriteKeys replaces the keys file with entries (whose pairs New made), in
// one rename, so a reload reads the old file or the new one.
func (f *Fixture) WriteKeys(t testing.TB, entries []Entry) {
	t.Helper()
	var b strings.Builder
	for _, e := range entries {
		pair := e.Pair
		if pair == "" {
			pair = e.Name
		}
		kp, ok := f.pairs[pair]
		if !ok {
			t.Fatalf("curvetest: no key pair %q", pair)
		}
		fmt.Fprintf(&b, "[[key]]\nname = %q\nrole = %q\npublic = %q\nadmin = %t\nwatch = %t\n", e.Name, e.Role, kp.Public, e.Rights.Admin, e.Rights.Watch)
		if len(e.Rights.Services) > 0 {
			fmt.Fprintf(&b, "services = [")
			for i, s := range e.Rights.Services {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%q", s)
			}
			b.WriteString("]\n")
		}
		b.WriteString("\n")
	}
	tmp := f.KeysFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.KeysFile); err != nil {
		t.Fatal(err)
	}
}

// Pair returns the key pair called name.
func (f *Fixture) Pair(t testing.TB, name string) curve.KeyPair {
	t.Helper()
	kp, ok := f.pairs[name]
	if !ok {
		t.Fatalf("curvetest: no key pair %q", name)
	}
	return kp
}

// Client returns client-side keys for name: the broker's public key and
// name's pair.
func (f *Fixture) Client(t testing.TB, name string) *curve.Client {
	t.Helper()
	return &curve.Client{Broker: curve.Public{Name: "broker", Key: f.Broker.Public}, Own: f.Pair(t, name)}
}

// Keys loads the keys file as a broker would.
func (f *Fixture) Keys(t testing.TB) *auth.Keys {
	t.Helper()
	k, err := auth.NewKeys(auth.KeySource{File: f.KeysFile})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PubFile and KeyFile are the paths of name's public and secret key files.
func (f *Fixture) PubFile(name string) string { return filepath.Join(f.Dir, name+".pub") }
func (f *Fixture) KeyFile(name string) string { return filepath.Join(f.Dir, name+".key") }
