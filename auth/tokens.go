package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"
)

// TokenPrefix starts every token AddToken makes, so a leaked one is easy to
// recognise (and to search for in logs and repositories).
const TokenPrefix = "zmws_"

// hashPrefix names the hash function of a tokens file's hash values.
const hashPrefix = "sha256:"

// maxNameLen bounds a token's name.
const maxNameLen = 64

// ErrDuplicateName is returned by AddToken for a name the file already has.
var ErrDuplicateName = errors.New("auth: a token with this name exists")

// Tokens is a parsed tokens file: named SHA-256 hashes of HTTP bearer
// tokens, each with its Rights. The tokens themselves are never stored. A
// Tokens is immutable and safe for concurrent use.
//
// The file is TOML, one [[token]] table per token:
//
//	[[token]]
//	name = "ci"
//	hash = "sha256:<64 hex digits>"   # SHA-256 of the whole token, zmws_ prefix included
//	services = ["STR-*"]              # Rights.Services; empty or absent: every service
//	admin = false                     # Rights.Admin
type Tokens struct {
	path    string
	entries []tokenEntry
}

type tokenEntry struct {
	name   string
	hash   [sha256.Size]byte
	rights Rights
}

// TokenInfo is what a tokens file says about one token, less its hash.
type TokenInfo struct {
	Name   string
	Rights Rights
}

// tokensFile is the TOML shape of a tokens file.
type tokensFile struct {
	Token []tokenTOML `toml:"token"`
}

// tokenTOML is one [[token]] table. The Rights fields sit beside name and
// hash.
type tokenTOML struct {
	Name string `toml:"name"`
	Hash string `toml:"hash"`
	Rights
}

// LoadTokens reads and checks the tokens file at path. Unknown keys,
// malformed hashes, empty or repeated names, repeated hashes and bad service
// patterns are errors that name the file and the entry. A file anyone may
// write to is refused: whoever can write it can give themselves any rights.
// (A readable file is allowed: it holds hashes of random 256-bit tokens,
// not the tokens.)
func LoadTokens(path string) (*Tokens, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	t, err := parseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	t.path = path
	return t, nil
}

// readPrivate reads the file at path, refusing one that is world-writable.
// The check is on the open file, so it is the file read that was checked.
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tokens file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o002 != 0 {
		return nil, fmt.Errorf("tokens file %s: mode %04o lets any user write it, and so grant themselves any rights; chmod o-w it (0600 is usual)", path, perm)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return b.Bytes(), nil
}

// parseTokens decodes and checks the text of a tokens file.
func parseTokens(data []byte) (*Tokens, error) {
	var tf tokensFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&tf)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s (want [[token]] tables with name, hash, services, admin)", strings.Join(keys, ", "))
	}
	t := &Tokens{entries: make([]tokenEntry, 0, len(tf.Token))}
	names := make(map[string]int, len(tf.Token))
	hashes := make(map[[sha256.Size]byte]string, len(tf.Token))
	for i, e := range tf.Token {
		where := fmt.Sprintf("token %d", i+1)
		if e.Name != "" {
			where += fmt.Sprintf(" (%q)", e.Name)
		}
		if err := checkName(e.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if j, dup := names[e.Name]; dup {
			return nil, fmt.Errorf("%s: name already used by token %d", where, j)
		}
		names[e.Name] = i + 1
		h, err := parseHash(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if other, dup := hashes[h]; dup {
			return nil, fmt.Errorf("%s: same hash as token %q (one token under two names)", where, other)
		}
		hashes[h] = e.Name
		if err := e.Rights.Check(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if e.Watch {
			return nil, fmt.Errorf("%s: watch is for ZeroMQ clients (the gateway's event stream, /ui/events, needs an admin token)", where)
		}
		t.entries = append(t.entries, tokenEntry{name: e.Name, hash: h, rights: e.Rights})
	}
	return t, nil
}

// checkName allows names that read well in logs and listings: letters,
// digits and . _ - @, at most maxNameLen bytes.
func checkName(name string) error {
	if name == "" {
		return errors.New("name is missing")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name of %d bytes: at most %d", len(name), maxNameLen)
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("._-@", c)) {
			return fmt.Errorf("name %q: use letters, digits and . _ - @", name)
		}
	}
	return nil
}

// parseHash reads "sha256:" and 64 hex digits.
func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	hexa, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		if s == "" {
			return h, errors.New("hash is missing")
		}
		return h, fmt.Errorf("hash must start with %q", hashPrefix)
	}
	b, err := hex.DecodeString(hexa)
	if err != nil || len(b) != sha256.Size {
		return h, fmt.Errorf("hash: want %s and %d hex digits", hashPrefix, 2*sha256.Size)
	}
	copy(h[:], b)
	return h, nil
}

// Path is the file t was loaded from.
func (t *Tokens) Path() string { return t.path }

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// List returns the tokens' names and rights, in file order.
func (t *Tokens) List() []TokenInfo {
	out := make([]TokenInfo, len(t.entries))
	for i, e := range t.entries {
		out[i] = TokenInfo{Name: e.name, Rights: e.rights}
	}
	return out
}

// Lookup returns the name and rights of token. It hashes token and compares
// the hash with every entry's in constant time, without stopping at a
// match, so the time taken says nothing about which hash, or how much of
// one, matched.
func (t *Tokens) Lookup(token string) (name string, r Rights, ok bool) {
	if t == nil || token == "" {
		return "", Rights{}, false
	}
	sum := sha256.Sum256([]byte(token))
	match := -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", Rights{}, false
	}
	e := t.entries[match]
	return e.name, e.rights, true
}

// HashToken returns the value a tokens file holds for token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// NewToken returns a fresh token: TokenPrefix and 32 random bytes, base64url.
func NewToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// AddToken makes a new token with rights r, appends its name and hash to the
// tokens file at path (creating the file, mode 0600, when it does not
// exist) and returns the token, which is stored nowhere else: show it once.
// The file must load (LoadTokens) before and after; a name it already has
// is ErrDuplicateName. Comments and layout already in the file are kept.
//
// AddToken does not lock the file: two running at once for the same file
// may both succeed with the same name, which the next load then refuses.
func AddToken(path, name string, r Rights) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("token %q: %w", name, err)
	}
	if err := r.Check(); err != nil {
		return "", fmt.Errorf("token %q: %w", name, err)
	}
	if r.Watch {
		return "", fmt.Errorf("token %q: watch is for ZeroMQ clients (the gateway's event stream, /ui/events, needs an admin token)", name)
	}
	old, err := readPrivate(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	t, err := parseTokens(old)
	if err != nil {
		return "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	for _, e := range t.entries {
		if e.name == name {
			return "", fmt.Errorf("tokens file %s: %q: %w", path, name, ErrDuplicateName)
		}
	}
	token := NewToken()
	entry, err := encodeEntry(name, HashToken(token), r)
	if err != nil {
		return "", err
	}
	var add bytes.Buffer
	if len(old) > 0 && old[len(old)-1] != '\n' {
		add.WriteByte('\n')
	}
	if len(old) > 0 {
		add.WriteByte('\n')
	}
	fmt.Fprintf(&add, "# added %s\n", time.Now().UTC().Format(time.RFC3339))
	add.Write(entry)
	// What the file will say must load, or nothing is written.
	if _, err := parseTokens(append(old[:len(old):len(old)], add.Bytes()...)); err != nil {
		return "", fmt.Errorf("tokens file %s: the new entry would not load: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("tokens file: %w", err)
	}
	if _, err := f.Write(add.Bytes()); err != nil {
		f.Close()
		return "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	return token, nil
}

// encodeEntry returns one [[token]] table, quoted by the TOML encoder.
func encodeEntry(name, hash string, r Rights) ([]byte, error) {
	type entry struct {
		Name     string   `toml:"name"`
		Hash     string   `toml:"hash"`
		Services []string `toml:"services"`
		Admin    bool     `toml:"admin"`
	}
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	services := r.Services
	if services == nil {
		services = []string{}
	}
	err := enc.Encode(struct {
		Token []entry `toml:"token"`
	}{[]entry{{name, hash, services, r.Admin}}})
	return b.Bytes(), err
}

// TokenSet holds the tokens of one file and swaps in a new version on
// Reload. Lookups and reloads may run concurrently: a Lookup sees the old
// set or the new one, never a mix.
type TokenSet struct {
	path string
	cur  atomic.Pointer[Tokens]
}

// NewTokenSet loads the tokens file at path (see LoadTokens).
func NewTokenSet(path string) (*TokenSet, error) {
	t, err := LoadTokens(path)
	if err != nil {
		return nil, err
	}
	s := &TokenSet{path: path}
	s.cur.Store(t)
	return s, nil
}

// Reload reads the file again. On an error the tokens in use stay as they
// were, and the error says why the file was not taken.
func (s *TokenSet) Reload() error {
	t, err := LoadTokens(s.path)
	if err != nil {
		return err
	}
	s.cur.Store(t)
	return nil
}

// Tokens returns the tokens in use.
func (s *TokenSet) Tokens() *Tokens { return s.cur.Load() }

// Path is the tokens file.
func (s *TokenSet) Path() string { return s.path }

// Lookup is Tokens.Lookup on the tokens in use.
func (s *TokenSet) Lookup(token string) (name string, r Rights, ok bool) {
	return s.cur.Load().Lookup(token)
}
