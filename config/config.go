package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// zmwsd's defaults for what [broker] leaves unset. cmd/zmwsd's tests check
// that its flags default to the same.
const (
	DefaultClientBind = "tcp://127.0.0.1:5555"
	DefaultWorkerBind = "tcp://127.0.0.1:5556"
	DefaultEventsBind = "tcp://127.0.0.1:5557"
	DefaultHTTPBind   = "127.0.0.1:5580"
	DefaultDataDir    = "zmws-data" // relative to zmwsd's working folder
)

// SearchPath returns where Find looks, in order.
func SearchPath() []string { return []string{"zmws.toml", "/etc/zmws/zmws.toml"} }

// Error is a problem with a file: at a line, or (Line 0) with the file as a
// whole. Everything Load and Parse return is one, or several joined.
type Error struct {
	Path string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// File is an installation file, read and checked: every key is known and
// has a value of its kind, every [[worker]] has a unique name and serves
// something. It is not changed after Load.
type File struct {
	Path    string   // as given to Load
	Dir     string   // the file's folder, absolute: relative paths in the file are taken from it
	Broker  Section  // [broker]; its Line is 0 when the file has none
	Workers []Worker // the [[worker]] entries, in the order of the file

	schedules []Schedule // the [[broker.schedule]] entries (Schedules)
}

// Section is one table of the file.
type Section struct {
	Line int // of its header ([broker], [[worker]]); 0 when absent
	// Values holds each key's value as its Kind says: string, int64, bool,
	// time.Duration, []string; a KindPath is made absolute against
	// File.Dir (an empty one stays empty); command is a string or []string.
	Values map[string]any
	Lines  map[string]int // the line of each key of Values

	invalid map[string]bool // keys the file has with a bad value: reported already
}

// Worker is a [[worker]] entry: one zmws-run.
type Worker struct {
	Name string // its name key; by default its service, or its jobs_dir's base name
	Section
	brokers []string
}

// Brokers returns the endpoints the worker connects to: its brokers key, or
// else the [broker]'s worker endpoint (File.WorkerEndpoint).
func (w *Worker) Brokers() []string { return slices.Clone(w.brokers) }

// Command returns the entry's command: a line to split as a template's is,
// or its words; both empty when it has none.
func (w *Worker) Command() (line string, args []string) {
	switch c := w.Values["command"].(type) {
	case string:
		return c, nil
	case []string:
		return "", slices.Clone(c)
	}
	return "", nil
}

func (s *Section) str(key, def string) string {
	if v, ok := s.Values[key].(string); ok {
		return v
	}
	return def
}

// ClientBind returns the endpoint zmwsd binds for clients: [broker]
// client_bind, or zmwsd's default. Like the other accessors it tells what
// the file says, not what flags or the environment would change.
func (f *File) ClientBind() string { return f.Broker.str("client_bind", DefaultClientBind) }

// WorkerBind returns the endpoint zmwsd binds for workers.
func (f *File) WorkerBind() string { return f.Broker.str("worker_bind", DefaultWorkerBind) }

// EventsBind returns the endpoint zmwsd publishes events on; "" for none.
func (f *File) EventsBind() string { return f.Broker.str("events_bind", DefaultEventsBind) }

// HTTPBind returns the address of the HTTP gateway; "" for none.
func (f *File) HTTPBind() string { return f.Broker.str("http_bind", DefaultHTTPBind) }

// DataDir returns the journal's folder (absolute when the file sets it);
// "" keeps jobs in memory only.
func (f *File) DataDir() string { return f.Broker.str("data_dir", DefaultDataDir) }

// WorkerEndpoint returns the endpoint a worker on this machine connects to
// to reach WorkerBind (see Reachable); an error names worker_bind.
func (f *File) WorkerEndpoint() (string, error) {
	ep, err := Reachable(f.WorkerBind())
	if err != nil {
		return "", fmt.Errorf("worker_bind %w", err)
	}
	return ep, nil
}

// Reachable turns a bind endpoint into one a process on this machine
// connects to: a wildcard host (* or 0.0.0.0, [::]) becomes loopback. An
// endpoint without a fixed port (tcp://host:*) or path, or an inproc one,
// cannot be reached from another process: an error that starts with the
// endpoint, quoted.
func Reachable(bind string) (string, error) {
	scheme, addr, ok := strings.Cut(bind, "://")
	switch {
	case !ok:
		return "", fmt.Errorf("%q is not an endpoint like tcp://HOST:PORT", bind)
	case scheme == "inproc":
		return "", fmt.Errorf("%q is an inproc endpoint, which only zmwsd itself reaches", bind)
	case scheme == "ipc" && addr == "*":
		return "", fmt.Errorf("%q has no fixed path", bind)
	case scheme != "tcp":
		return bind, nil
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", fmt.Errorf("%q has no port", bind)
	}
	host, port := addr[:i], addr[i+1:]
	if port == "" || port == "0" || port[0] == '*' || port[0] == '!' {
		return "", fmt.Errorf("%q has no fixed port", bind)
	}
	switch host {
	case "*", "0.0.0.0":
		host = "127.0.0.1"
	case "[::]":
		host = "[::1]"
	}
	return "tcp://" + host + ":" + port, nil
}

// Names returns the names of the [[worker]] entries, in file order.
func (f *File) Names() []string {
	names := make([]string, len(f.Workers))
	for i, w := range f.Workers {
		names[i] = w.Name
	}
	return names
}

// Worker returns the [[worker]] entry named name. With name "" it returns
// the only entry, or nil when there is none; with several that is an
// error, as is a name no entry has.
func (f *File) Worker(name string) (*Worker, error) {
	names := strings.Join(f.Names(), ", ")
	if name == "" {
		switch len(f.Workers) {
		case 0:
			return nil, nil
		case 1:
			return &f.Workers[0], nil
		}
		return nil, &Error{Path: f.Path, Err: fmt.Errorf("%d [[worker]] entries (%s): name one", len(f.Workers), names)}
	}
	for i := range f.Workers {
		if f.Workers[i].Name == name {
			return &f.Workers[i], nil
		}
	}
	if len(f.Workers) == 0 {
		return nil, &Error{Path: f.Path, Err: fmt.Errorf("no [[worker]] named %q: the file has no [[worker]] entries", name)}
	}
	return nil, &Error{Path: f.Path, Err: fmt.Errorf("no [[worker]] named %q; the names are %s", name, names)}
}

// Find returns the first file of SearchPath that exists, or "" when none
// does. A path that exists but cannot be read is an error.
func Find() (string, error) { return find(SearchPath()) }

func find(paths []string) (string, error) {
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", &Error{Path: p, Err: pathErr(err)}
		case fi.IsDir():
			return "", &Error{Path: p, Err: errors.New("is a folder, not a file")}
		}
		return p, nil
	}
	return "", nil
}

// pathErr drops the operation and path of an fs.PathError, which Error
// names already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Load reads and checks the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Path: path, Err: pathErr(err)}
	}
	return Parse(path, data)
}

// Parse checks data, the text of the file at path (which names it in
// errors and anchors its relative paths). It reports every problem it
// finds, each with its line, joined in line order.
func Parse(path string, data []byte) (*File, error) {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	var raw map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Path: path, Line: pe.Position.Line, Err: errors.New(pe.Message)}
		}
		return nil, &Error{Path: path, Err: err}
	}
	p := &parser{f: &File{Path: path, Dir: dir, Broker: newSection(0)}}
	p.walk(md, raw, keyLines(string(data), md.Keys()))
	p.checkWorkers()
	p.checkSchedules()
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		if len(p.errs) == 1 {
			return nil, p.errs[0]
		}
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return p.f, nil
}

func newSection(line int) Section {
	return Section{Line: line, Values: map[string]any{}, Lines: map[string]int{}, invalid: map[string]bool{}}
}

// parser builds a File and collects its errors.
type parser struct {
	f    *File
	errs []*Error
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{Path: p.f.Path, Line: line, Err: fmt.Errorf(format, args...)})
}

// walk checks every key of the file, in order, and records the values.
func (p *parser) walk(md toml.MetaData, raw map[string]any, lines []int) {
	var (
		broker, _  = raw["broker"].(map[string]any)
		workers, _ = raw["worker"].([]map[string]any)
		scheds, _  = broker["schedule"].([]map[string]any)
		entry      = -1                // index of the current [[worker]]
		bad        = map[string]bool{} // keys already reported, with what is under them
		brokerKeys = BrokerKeys()
		workerKeys = WorkerKeys()
	)
	for i, k := range md.Keys() {
		line := lines[i]
		if bad[k[0]] || len(k) > 1 && bad[k[:2].String()] {
			continue
		}
		switch {
		case len(k) == 1 && k[0] == "broker":
			if md.Type(k...) != "Hash" {
				p.errorf(line, "broker must be one table, [broker]")
				bad[k[0]] = true
				continue
			}
			p.f.Broker.Line = line
		case len(k) == 1 && k[0] == "worker":
			if md.Type(k...) != "ArrayHash" {
				p.errorf(line, "worker must be a list of tables: write each entry as [[worker]]")
				bad[k[0]] = true
				continue
			}
			entry++
			p.f.Workers = append(p.f.Workers, Worker{Section: newSection(line)})
		case isScheduleTable(md, k):
			if len(k) > 2 && bad[k[:3].String()] {
				continue
			}
			p.scheduleKey(k, scheds, line, bad)
		case k[0] == "broker":
			if !p.key(&p.f.Broker, "[broker]", brokerKeys, k[1], broker[k[1]], line, len(k) > 2) {
				bad[k[:2].String()] = true // and whatever is under it
			}
		case k[0] == "worker":
			if entry < 0 || entry >= len(workers) {
				continue // cannot be: TOML puts keys under the last [[worker]]
			}
			if !p.key(&p.f.Workers[entry].Section, "[[worker]]", workerKeys, k[1], workers[entry][k[1]], line, len(k) > 2) {
				bad[k[:2].String()] = true
			}
		default:
			if t := md.Type(k[0]); t == "Hash" || t == "ArrayHash" || len(k) > 1 {
				p.errorf(line, "unknown table [%s]: the tables are [broker] and [[worker]]", k[0])
			} else {
				p.errorf(line, "unknown key %q outside any table: keys belong in [broker] or a [[worker]]", k[0])
			}
			bad[k[0]] = true
		}
	}
}

// key checks one key of a table and records its value; dotted says the
// file has name.sub = ... (or [table.name.sub]). It reports whether the key
// is good.
func (p *parser) key(s *Section, table string, keys []Key, name string, v any, line int, dotted bool) bool {
	k, ok := lookup(keys, name)
	switch {
	case !ok:
		hint := ""
		if name == "broker" && table == "[[worker]]" {
			hint = " (did you mean brokers?)"
		}
		p.errorf(line, "unknown key %q in %s%s", name, table, hint)
		return false
	case dotted:
		p.errorf(line, "%s: want %s, not a table", name, want(k))
		return false
	}
	val, err := value(k, v, p.f.Dir)
	if err != nil {
		p.errorf(line, "%s: %v", name, err)
		s.invalid[name] = true
		return false
	}
	s.Values[name] = val
	s.Lines[name] = line
	return true
}

// value checks v, a key's value as TOML decoded it, against k's kind and
// converts it to what Section.Values holds.
func value(k Key, v any, dir string) (any, error) {
	bad := fmt.Errorf("want %s, not %s", want(k), typeName(v))
	switch k.Kind {
	case KindString, KindPath, KindEnum:
		s, ok := v.(string)
		switch {
		case !ok:
			return nil, bad
		case k.Kind == KindEnum && !slices.Contains(k.Enum, s):
			return nil, fmt.Errorf("%q: want %s", s, or(k.Enum))
		case k.Kind == KindPath && s != "" && !filepath.IsAbs(s):
			return filepath.Join(dir, s), nil
		}
		return s, nil
	case KindInt:
		if n, ok := v.(int64); ok {
			return n, nil
		}
		return nil, bad
	case KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, bad
	case KindDuration:
		s, ok := v.(string)
		if !ok {
			return nil, bad
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration: write it like \"2500ms\", \"30s\" or \"1h30m\"", s)
		}
		return d, nil
	case KindList, KindCommand:
		if s, ok := v.(string); ok {
			if k.Kind == KindCommand {
				if strings.TrimSpace(s) == "" {
					return nil, errors.New("empty")
				}
				return s, nil
			}
			return []string{s}, nil
		}
		a, ok := v.([]any)
		if !ok {
			return nil, bad
		}
		list := make([]string, len(a))
		for i, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("item %d is %s: want a string", i+1, typeName(e))
			}
			list[i] = s
		}
		if k.Kind == KindCommand && (len(list) == 0 || list[0] == "") {
			return nil, errors.New("no program: the first word is empty or missing")
		}
		return list, nil
	}
	return nil, bad
}

// want says what a key of k's kind takes.
func want(k Key) string {
	switch k.Kind {
	case KindEnum:
		return or(k.Enum)
	case KindInt:
		return "an integer"
	case KindBool:
		return "true or false"
	case KindDuration:
		return `a duration in a string, like "30s"`
	case KindList:
		return "an array of strings"
	case KindCommand:
		return "a command line, or an array of its words"
	}
	return "a string"
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// or joins words as "a, b or c".
func or(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// checkWorkers checks what each [[worker]] needs beyond its keys' kinds,
// and names the entries.
func (p *parser) checkWorkers() {
	taken := map[string]int{} // name → line of its entry
	for i := range p.f.Workers {
		w := &p.f.Workers[i]
		if w.invalid["service"] || w.invalid["jobs_dir"] || w.invalid["command"] {
			continue // what it serves is unclear: said already
		}
		service, hasService := w.Values["service"].(string)
		jobs, hasJobs := w.Values["jobs_dir"].(string)
		_, hasCommand := w.Values["command"]
		switch {
		case hasService && service == "":
			p.errorf(w.Lines["service"], "service: empty")
		case hasService && hasJobs:
			p.errorf(max(w.Lines["service"], w.Lines["jobs_dir"]),
				"jobs_dir and service exclude each other: a [[worker]] serves a folder of templates or one command")
		case hasService && !hasCommand:
			p.errorf(w.Lines["service"], "service %s has no command: add command = \"...\" to its [[worker]]", service)
		case hasService: // and its command
		case hasCommand && hasJobs:
			p.errorf(w.Lines["command"], "command is for a service, not a jobs_dir: a template says its own command")
		case hasCommand:
			p.errorf(w.Lines["command"], "command has no service: add service = \"NAME\" to its [[worker]]")
		case !hasJobs:
			p.errorf(w.Line, "this [[worker]] serves nothing: give it service and command, or jobs_dir")
		}
		_, hasIdle := w.Values["idle_command"]
		if _, ok := w.Values["prestart"]; ok && !hasService && hasJobs {
			p.errorf(w.Lines["prestart"], "prestart is for a service; a template in jobs_dir says its own")
		}
		if _, ok := w.Values["user"]; ok && !hasService && hasJobs && !hasIdle {
			p.errorf(w.Lines["user"], "user is for a service or the idle_command; a template in jobs_dir says its own")
		}
		if _, ok := w.Values["only"]; ok && !hasJobs {
			p.errorf(w.Lines["only"], "only needs jobs_dir")
		}

		name, line, after := w.Values["name"], w.Lines["name"], ""
		switch {
		case name != nil:
		case hasService && service != "":
			name, line, after = service, w.Line, "its service"
		case hasJobs:
			name, line, after = filepath.Base(jobs), w.Line, "its jobs_dir"
		default:
			continue
		}
		w.Name = name.(string)
		if !validName(w.Name) {
			if after == "" {
				p.errorf(line, "name %q: use letters, digits and . _ : - (it is given to --worker, and to systemd)", w.Name)
			} else {
				p.errorf(line, "cannot name this [[worker]] %q after %s: give it a name = \"...\" of letters, digits and . _ : -", w.Name, after)
			}
		} else if prev, dup := taken[w.Name]; dup {
			if after == "" {
				p.errorf(line, "name %q is already taken by the [[worker]] on line %d", w.Name, prev)
			} else {
				p.errorf(line, "this [[worker]] is named %q after %s, like the [[worker]] on line %d: give one of them a name = \"...\"", w.Name, after, prev)
			}
		} else {
			taken[w.Name] = w.Line
		}

		if b, ok := w.Values["brokers"].([]string); ok {
			if len(b) == 0 {
				p.errorf(w.Lines["brokers"], "brokers: empty")
			}
			w.brokers = b
		} else if ep, err := p.f.WorkerEndpoint(); err != nil {
			p.errorf(w.Line, "this [[worker]] has no brokers, and [broker] %v: give it brokers = [\"tcp://HOST:PORT\"]", err)
		} else {
			w.brokers = []string{ep}
		}
	}
}

// validName reports whether s can name a [[worker]]: letters, digits and
// . _ : -, starting with a letter or digit, so that it is one word on a
// command line and a systemd instance name as it is.
func validName(s string) bool {
	if s == "" || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune("._:-", rune(s[i])) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}
