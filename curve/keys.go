package curve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	zmq "github.com/pebbe/zmq4"
)

// KeyLen is the length of a CURVE key in Z85 text.
const KeyLen = 40

// z85Alphabet is the Z85 character set (ZeroMQ RFC 32).
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// Public is a public key loaded from a file.
type Public struct {
	// Name is the key's name: the file's comment line, else the file name
	// without .pub.
	Name string
	// Key is the key in Z85.
	Key string
	// File is where it was read from.
	File string
}

// KeyPair is a secret key and its public key.
type KeyPair struct {
	Name   string
	Public string // Z85
	Secret string // Z85
	File   string // the .key file
}

// CheckZ85 reports whether s is a CURVE key in Z85: 40 characters of the
// alphabet that decode to 32 bytes and encode back to s.
func CheckZ85(s string) error {
	if len(s) != KeyLen {
		return fmt.Errorf("a key is %d Z85 characters, this one has %d", KeyLen, len(s))
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune(z85Alphabet, r) }); i >= 0 {
		return fmt.Errorf("character %d (%q) is not Z85", i+1, s[i])
	}
	if zmq.Z85encode(zmq.Z85decode(s)) != s {
		return errors.New("not a valid Z85 key (a group is out of range)")
	}
	return nil
}

// readKeyFile returns the key line and the comment of a key file.
func readKeyFile(data []byte) (key, comment string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if comment == "" {
				comment = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			}
		case key != "":
			return "", "", errors.New("more than one key line")
		default:
			key = line
		}
	}
	if key == "" {
		return "", "", errors.New("no key in the file")
	}
	return key, comment, CheckZ85(key)
}

// LoadPublic reads and checks a .pub file.
func LoadPublic(path string) (Public, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Public{}, fmt.Errorf("public key %s: %w", path, err)
	}
	key, comment, err := readKeyFile(data)
	if err != nil {
		return Public{}, fmt.Errorf("public key %s: %w", path, err)
	}
	name := comment
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), ".pub")
	}
	return Public{Name: name, Key: key, File: path}, nil
}

// LoadSecret reads and checks a .key file: readable by its owner only, one
// valid key, and, when NAME.pub lies beside it, the public key of that
// secret.
func LoadSecret(path string) (KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secret key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return KeyPair{}, fmt.Errorf("secret key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return KeyPair{}, fmt.Errorf("secret key %s: mode %04o lets others read it; chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secret key %s: %w", path, err)
	}
	secret, comment, err := readKeyFile(data)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secret key %s: %w", path, err)
	}
	public, err := zmq.AuthCurvePublic(secret)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secret key %s: derive its public key: %w", path, err)
	}
	name := comment
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), ".key")
	}
	pubPath := strings.TrimSuffix(path, ".key") + ".pub"
	if pubPath != path {
		pub, err := LoadPublic(pubPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return KeyPair{}, err
		case pub.Key != public:
			return KeyPair{}, fmt.Errorf("secret key %s does not match its public key %s", path, pubPath)
		}
	}
	return KeyPair{Name: name, Public: public, Secret: secret, File: path}, nil
}

// Generate writes a new key pair as dir/NAME.key (mode 0600) and
// dir/NAME.pub, each with a comment line naming it. It refuses to overwrite
// either file.
func Generate(dir, name string) (KeyPair, error) {
	if name == "" || strings.ContainsAny(name, "/\\\n\r") || name == "." || name == ".." {
		return KeyPair{}, fmt.Errorf("key name %q: want a plain file name", name)
	}
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	keyPath := filepath.Join(dir, name+".key")
	pubPath := filepath.Join(dir, name+".pub")
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return KeyPair{}, fmt.Errorf("%s exists: not overwriting it", p)
		}
	}
	if err := writeNew(keyPath, 0o600, "# "+name+"\n# zmws secret key: keep it private (mode 0600)\n"+secret+"\n"); err != nil {
		return KeyPair{}, err
	}
	if err := writeNew(pubPath, 0o644, "# "+name+"\n"+public+"\n"); err != nil {
		os.Remove(keyPath)
		return KeyPair{}, err
	}
	return KeyPair{Name: name, Public: public, Secret: secret, File: keyPath}, nil
}

// writeNew creates path (failing if it exists) with mode and content.
func writeNew(path string, mode os.FileMode, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
