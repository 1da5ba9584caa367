package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Ext is the file name extension of a template in a jobs directory.
const Ext = ".toml"

// Spec is a service definition as written: the keys of a NAME.toml template,
// or what zmws-run builds from its command line for an inline service. Zero
// values mean "not set": New fills them from Defaults. New turns a Spec into
// a checked Template.
type Spec struct {
	// Service is the service name; LoadFile defaults it to the file name
	// without its extension.
	Service string `toml:"service"`
	// Description is for people (zmws-run --check shows it).
	Description string `toml:"description"`
	// Command is the command line: a string split with shell rules, or an
	// array of words taken as they are.
	Command Command `toml:"command"`
	// Stdin, when set, is the text written to the command's stdin, with
	// placeholders. When nil, stdin is the job's input (see the package doc).
	Stdin *string `toml:"stdin"`
	// Env is extra environment for the command; values may hold placeholders.
	Env map[string]string `toml:"env"`
	// InheritEnv lists the variables of zmws-run's own environment that the
	// command sees: names, NAME* prefixes, or "*" for all. Nil: Defaults.
	InheritEnv []string `toml:"inherit_env"`
	// Workdir is the command's working directory. LoadFile resolves a
	// relative path against the template's folder.
	Workdir string `toml:"workdir"`
	// Timeout bounds a job's run time; 0 means none.
	Timeout Duration `toml:"timeout"`
	// Grace is how long the process group has, after SIGTERM, before SIGKILL.
	Grace Duration `toml:"grace"`
	// Concurrency is how many jobs of the service run at once.
	Concurrency int `toml:"concurrency"`
	// MaxOutput caps the stdout bytes kept and sent per job.
	MaxOutput int `toml:"max_output"`
	// Retries opts the service in to retries of failed jobs: the broker
	// runs a job whose command failed again, up to this many times, with
	// exponential backoff. Announced to the broker in READY.
	Retries int `toml:"retries"`
	// Prestart keeps one process of the command started per slot, waiting
	// for its job, which then gets the process's stdin. Only for commands
	// that read their input before they do anything; the command and env
	// cannot hold placeholders (stdin can). See Handler.
	Prestart bool `toml:"prestart"`
	// User, when set, is the user the command runs as, so that it cannot
	// read zmws-run's memory or environment (/proc/PID/environ). It takes
	// zmws-run running as root; the user must exist when the template is
	// loaded.
	User string `toml:"user"`
	// Params declares parameters: defaults and validation.
	Params map[string]Param `toml:"params"`
}

// Param declares one parameter of a template.
type Param struct {
	Description string `toml:"description"`
	// Required, when nil, is true for a parameter without a default.
	// A required parameter must be given and not be empty.
	Required *bool `toml:"required"`
	// Pattern is a regular expression (RE2 syntax) the whole value must
	// match.
	Pattern string `toml:"pattern"`
	// Default is the value when the job does not give one.
	Default *string `toml:"default"`
	// AllowDash lets a value start with "-" where it begins an argument.
	AllowDash bool `toml:"allow_dash"`
}

// Command is a command line: either Line, split with shell quoting rules
// (there is no shell: operators are refused), or Args, taken word by word.
type Command struct {
	Line string
	Args []string
}

// UnmarshalTOML accepts a string (a command line) or an array of strings.
func (c *Command) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*c = Command{Line: v}
		return nil
	case []any:
		args := make([]string, len(v))
		for i, a := range v {
			s, ok := a.(string)
			if !ok {
				return fmt.Errorf("command: word %d is a %T, want a string", i, a)
			}
			args[i] = s
		}
		*c = Command{Args: args}
		return nil
	}
	return fmt.Errorf("command: got a %T, want a string or an array of strings", v)
}

// String renders the command for people: Line, or Args shell-quoted.
func (c Command) String() string {
	if c.Args == nil {
		return c.Line
	}
	q := make([]string, len(c.Args))
	for i, a := range c.Args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%{}", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Duration is a time.Duration written as a string such as "30s" or "1h30m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %s", b)
	}
	*d = Duration(v)
	return nil
}

// Decode parses the TOML text of a template. Unknown keys are errors, so a
// misspelt key is not silently ignored.
func Decode(data []byte) (Spec, error) {
	var s Spec
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&s)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Spec{}, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return Spec{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Spec{}, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return s, nil
}

// LoadFile reads and checks the template at path. The service name defaults
// to the file name without its extension; a relative workdir is taken from
// the template's folder.
func LoadFile(path string, d Defaults) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Service == "" {
		s.Service = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if s.Workdir != "" && !filepath.IsAbs(s.Workdir) {
		s.Workdir = filepath.Join(filepath.Dir(path), s.Workdir)
	}
	t, err := New(s, d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t.source = path
	return t, nil
}

// LoadDir loads every *.toml file in dir (not its subfolders; names starting
// with "." are skipped), sorted by service name. It reports every bad file,
// and two files naming the same service, in one error.
func LoadDir(dir string, d Defaults) ([]*Template, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var (
		ts   []*Template
		errs []error
		seen = map[string]string{}
	)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || filepath.Ext(name) != Ext {
			continue
		}
		path := filepath.Join(dir, name)
		t, err := LoadFile(path, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := seen[t.Service()]; ok {
			errs = append(errs, fmt.Errorf("%s: service %s is already defined by %s", path, t.Service(), prev))
			continue
		}
		seen[t.Service()] = path
		ts = append(ts, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no %s templates", dir, Ext)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Service() < ts[j].Service() })
	return ts, nil
}
