package config

import (
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi/toml reports the line of a syntax error but not where each key
// is; its MetaData.Keys does list every key in the order of the text. The
// lines are found by walking that list beside the lines of the file that
// look like a table header ([a.b], [[a]]) or a key (a.b = ...), outside
// multi-line strings. This is a scan, not a parser: a line inside a
// multi-line array that looks like a key is skipped unless it happens to
// be the key looked for next.

// definition is a line that looks like it defines a key: a table header, or
// key = value under the last header.
type definition struct {
	path   []string
	line   int
	header bool
}

// keyLines returns the line of each of keys (MetaData.Keys of data). A key
// with no line of its own (inside an inline table) gets its parent's; 0
// when none is known.
func keyLines(data string, keys []toml.Key) []int {
	defs := definitions(data)
	lines := make([]int, len(keys))
	known := map[string]int{}
	next := 0
	for i, k := range keys {
		for j := next; j < len(defs); j++ {
			d := defs[j]
			if slices.Equal(d.path, k) {
				lines[i], next = d.line, j+1
				break
			}
			if len(d.path) > len(k) && slices.Equal(d.path[:len(k)], k) {
				lines[i] = d.line // implied by a dotted key or header below it
				break
			}
			if d.header {
				break // k is not defined on a line of its own
			}
		}
		if lines[i] == 0 {
			for n := len(k) - 1; n > 0 && lines[i] == 0; n-- {
				lines[i] = known[toml.Key(k[:n]).String()]
			}
		}
		known[k.String()] = lines[i]
	}
	return lines
}

// definitions lists the lines of data that look like table headers or keys.
func definitions(data string) []definition {
	var (
		defs  []definition
		table []string
		multi string // the delimiter of the multi-line string the line is in
	)
	for i, raw := range strings.Split(data, "\n") {
		s := strings.TrimSpace(raw)
		if multi != "" {
			if strings.Count(s, multi)%2 == 1 {
				multi = ""
			}
			continue
		}
		for _, delim := range []string{`"""`, "'''"} {
			if strings.Count(s, delim)%2 == 1 {
				multi = delim // from here on, until it closes
			}
		}
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			name, ok := headerName(s)
			if !ok {
				continue
			}
			path := splitKey(name)
			if path == nil {
				continue
			}
			table = path
			defs = append(defs, definition{path: path, line: i + 1, header: true})
			continue
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			continue
		}
		key := splitKey(s[:eq])
		if key == nil {
			continue
		}
		defs = append(defs, definition{path: append(slices.Clip(table), key...), line: i + 1})
	}
	return defs
}

// headerName returns what is between the brackets of [name] or [[name]].
func headerName(s string) (string, bool) {
	left, right := "[", "]"
	if strings.HasPrefix(s, "[[") {
		left, right = "[[", "]]"
	}
	end := strings.Index(s, right)
	if end < 0 {
		return "", false
	}
	return s[len(left):end], true
}

// splitKey splits a dotted key into its parts, each bare (A-Z a-z 0-9 _ -)
// or quoted; nil when s is not such a key.
func splitKey(s string) []string {
	var parts []string
	for {
		s = strings.TrimLeft(s, " \t")
		var part string
		switch {
		case s == "":
			return nil
		case s[0] == '"' || s[0] == '\'':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return nil
			}
			part, s = s[1:end+1], s[end+2:]
		default:
			n := 0
			for n < len(s) && isBare(s[n]) {
				n++
			}
			if n == 0 {
				return nil
			}
			part, s = s[:n], s[n:]
		}
		parts = append(parts, part)
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return parts
		}
		if s[0] != '.' {
			return nil
		}
		s = s[1:]
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
