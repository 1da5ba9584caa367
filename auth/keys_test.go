package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmws/zmws/auth"
	"github.com/zmws/zmws/curve"
)

func keyPair(t *testing.T, dir, name string) curve.KeyPair {
	t.Helper()
	kp, err := curve.Generate(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeySource_LoadsFileAndFolders(t *testing.T) {
	dir := t.TempDir()
	a := keyPair(t, dir, "alice")
	cdir, wdir := filepath.Join(dir, "clients"), filepath.Join(dir, "workers")
	os.Mkdir(cdir, 0o755)
	os.Mkdir(wdir, 0o755)
	keyPair(t, cdir, "carol")
	keyPair(t, wdir, "thumbs")
	file := writeFile(t, filepath.Join(dir, "keys.toml"), `
[[key]]
name = "alice"
role = "client"
public_file = "alice.pub"
services = ["STR-*"]

[[key]]
name = "billing"
role = "worker"
public = "`+keyPair(t, t.TempDir(), "b").Public+`"
services = ["BILLING"]
`)
	keys, err := auth.NewKeys(auth.KeySource{File: file, ClientDir: cdir, WorkerDir: wdir})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys.Current().Names(), ","); got != "alice,billing,carol,thumbs" {
		t.Fatalf("names %s", got)
	}
	pub := func(name string) string {
		if k := keys.Current().Named(name); k != nil {
			return k.Public
		}
		return keyPair(t, t.TempDir(), "stranger").Public
	}
	for _, tc := range []struct {
		got, want bool
		what      string
	}{
		{keys.MaySubmit(pub("alice"), "STR-REV"), true, "alice submits STR-REV"},
		{keys.MaySubmit(pub("alice"), "SLEEP"), false, "alice submits SLEEP"},
		{keys.MayAdmin(pub("alice")), false, "alice administers"},
		{keys.MayOffer(pub("alice"), "STR-REV"), false, "a client key offers"},
		{keys.MayOffer(pub("billing"), "BILLING"), true, "billing offers BILLING"},
		{keys.MayOffer(pub("billing"), "THUMBNAIL"), false, "billing offers THUMBNAIL"},
		{keys.MaySubmit(pub("billing"), "BILLING"), false, "a worker key submits"},
		{keys.MayAdmin(pub("carol")) && keys.MaySubmit(pub("carol"), "ANY"), true, "a folder client key has every right"},
		{keys.MayOffer(pub("thumbs"), "ANY"), true, "a folder worker key offers anything"},
		{keys.MaySubmit(pub("nobody"), "ANY"), false, "an unknown name"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if keys.Current().ByPublic(string(mustDecode(a.Public))) == nil {
		t.Error("alice not found by her raw public key")
	}
}

func TestKeySource_Refusals(t *testing.T) {
	dir := t.TempDir()
	a := keyPair(t, dir, "alice")
	entry := func(name, role, public, extra string) string {
		return "[[key]]\nname = \"" + name + "\"\nrole = \"" + role + "\"\npublic = \"" + public + "\"\n" + extra + "\n"
	}
	for i, tc := range []struct {
		content, want string
	}{
		{entry("alice", "client", a.Public, "colour = \"red\""), "unknown keys"},
		{entry("alice", "admin", a.Public, ""), `role "admin"`},
		{entry("alice", "client", "short", ""), "40 Z85"},
		{entry("alice", "client", a.Public, "") + entry("alice", "worker", keyPair(t, t.TempDir(), "x").Public, ""), "names must be unique"},
		{entry("alice", "client", a.Public, "") + entry("bob", "client", a.Public, ""), "same public key"},
		{entry("w", "worker", a.Public, "admin = true"), "rights of client keys"},
		{entry("alice", "client", a.Public, "services = [\"[\"]"), "service pattern"},
		{"[[key]]\nname = \"x\"\nrole = \"client\"\n", "needs public"},
		{"[[key]]\nname = \"x\"\nrole = \"client\"\npublic_file = \"nope.pub\"\n", "nope.pub"},
		{"not toml [", "keys file"},
	} {
		path := writeFile(t, filepath.Join(dir, "k"+string(rune('a'+i))+".toml"), tc.content)
		_, err := auth.NewKeys(auth.KeySource{File: path})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("case %d: %v, want an error naming %s and %q", i, err, path, tc.want)
		}
	}
	if _, err := auth.NewKeys(auth.KeySource{}); err == nil {
		t.Error("no source loaded")
	}
}

func TestKeys_ReloadKeepsTheOldSetOnError(t *testing.T) {
	dir := t.TempDir()
	a := keyPair(t, dir, "alice")
	file := writeFile(t, filepath.Join(dir, "keys.toml"), "[[key]]\nname = \"alice\"\nrole = \"client\"\npublic = \""+a.Public+"\"\n")
	keys, err := auth.NewKeys(auth.KeySource{File: file})
	if err != nil {
		t.Fatal(err)
	}
	gen := keys.Generation()
	writeFile(t, file, "garbage [")
	if err := keys.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	alice := a.Public
	if !keys.MaySubmit(alice, "X") || keys.Generation() != gen || keys.Name(alice) != "alice" {
		t.Error("a failed reload changed the set")
	}
	writeFile(t, file, "")
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	if keys.MaySubmit(alice, "X") || keys.Generation() == gen || keys.Name(alice) == "alice" {
		t.Error("a reload without alice kept her")
	}
}

func mustDecode(z85 string) []byte { return []byte(zmq.Z85decode(z85)) }
