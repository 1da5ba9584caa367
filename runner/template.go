package runner

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-shellwords"

	"github.com/zmws/zmws/protocol"
)

// Defaults for what neither a template nor Defaults sets.
const (
	// DefaultMaxOutput keeps a job's output (with the truncation note) below
	// the broker's default --max-output of 256 KiB.
	DefaultMaxOutput = 252 << 10
	// DefaultGrace is the time between SIGTERM and SIGKILL.
	DefaultGrace = 5 * time.Second
)

// DefaultInheritEnv is the part of zmws-run's environment a command sees
// unless configured otherwise: enough for ordinary tools to find programs,
// the home folder, the locale, the time zone and a temporary folder, and
// nothing that might hold a secret.
var DefaultInheritEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR"}

// Defaults apply where a template is silent: zmws-run fills them from its
// flags. An inline service takes everything from them.
type Defaults struct {
	Timeout     time.Duration     // 0: none
	Grace       time.Duration     // 0: DefaultGrace
	Concurrency int               // 0: 1
	MaxOutput   int               // 0: DefaultMaxOutput
	InheritEnv  []string          // nil: DefaultInheritEnv
	Env         map[string]string // a template's env is added on top
	Workdir     string            // "": zmws-run's own
}

// Template is a checked service definition: its command is split, its
// placeholders and parameters are known, every default is filled in. It is
// immutable and safe for concurrent use.
type Template struct {
	service     string
	description string
	command     Command
	argv        []text
	stdin       *text
	env         []envVar // sorted by name
	inherit     []string
	workdir     string
	timeout     time.Duration
	grace       time.Duration
	concurrency int
	retries     int
	maxOutput   int
	prestart    bool
	user        string
	cred        *syscall.Credential // of user; nil: zmws-run's own
	account     *user.User          // of user: its HOME, USER and LOGNAME replace zmws-run's
	fixed       []string            // argv of a prestart template, which has no placeholders
	params      map[string]*param   // declared: in the params table or a placeholder
	names       []string            // keys of params, sorted
	source      string              // the file it came from, if any
	idle        bool                // an idle command's (NewIdle): no job, no ZMWS_* variables
}

// Service returns the service name.
func (t *Template) Service() string { return t.service }

// Description returns the template's description.
func (t *Template) Description() string { return t.description }

// Command returns the command line as written.
func (t *Template) Command() Command { return t.command }

// Concurrency returns how many jobs of the service may run at once.
func (t *Template) Concurrency() int { return t.concurrency }

// Retries returns how often the broker should retry a failed job (0: never).
func (t *Template) Retries() int { return t.retries }

// Prestart reports whether the handler keeps processes started ahead of
// their jobs.
func (t *Template) Prestart() bool { return t.prestart }

// fixedArgv returns the argument vector of a prestart template.
func (t *Template) fixedArgv() []string { return t.fixed }

// User returns the user the command runs as, "" for zmws-run's own.
func (t *Template) User() string { return t.user }

// Timeout returns the run time limit of a job, 0 for none.
func (t *Template) Timeout() time.Duration { return t.timeout }

// Grace returns the time between SIGTERM and SIGKILL to a job's process
// group.
func (t *Template) Grace() time.Duration { return t.grace }

// Source returns the file the template was loaded from, or "".
func (t *Template) Source() string { return t.source }

// Params returns the names of the declared parameters, sorted.
func (t *Template) Params() []string { return slices.Clone(t.names) }

type param struct {
	name      string
	required  bool
	def       string
	hasDef    bool
	re        *regexp.Regexp
	allowDash bool
}

type envVar struct {
	name  string
	value text
}

// text is a string with placeholders: literal segments and {{name}}s.
type text []segment

type segment struct {
	lit  string
	name string // a placeholder when not ""
}

// placeholder matches {{name}} and {{name:default}}. Anything else between
// braces, such as a Go template's {{.ID}}, is literal text.
var placeholder = regexp.MustCompile(`\{\{([A-Za-z_][A-Za-z0-9_-]*)(?::([^{}]*))?\}\}`)

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// inlineDefault is a {{name:default}} found while parsing.
type inlineDefault struct {
	name, def string
	hasDef    bool
}

func parseText(s string) (text, []inlineDefault) {
	var (
		t    text
		defs []inlineDefault
		last int
	)
	for _, m := range placeholder.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			t = append(t, segment{lit: s[last:m[0]]})
		}
		name := s[m[2]:m[3]]
		t = append(t, segment{name: name})
		d := inlineDefault{name: name}
		if m[4] >= 0 {
			d.def, d.hasDef = s[m[4]:m[5]], true
		}
		defs = append(defs, d)
		last = m[1]
	}
	if last < len(s) || len(t) == 0 {
		t = append(t, segment{lit: s[last:]})
	}
	return t, defs
}

// String renders t as written, without the defaults of its placeholders.
func (t text) String() string {
	var b strings.Builder
	for _, s := range t {
		if s.name == "" {
			b.WriteString(s.lit)
		} else {
			b.WriteString("{{" + s.name + "}}")
		}
	}
	return b.String()
}

func (t text) hasPlaceholder() bool {
	for _, s := range t {
		if s.name != "" {
			return true
		}
	}
	return false
}

// expand substitutes vals into t.
func (t text) expand(vals map[string]string) string {
	if len(t) == 1 && t[0].name == "" {
		return t[0].lit
	}
	var b strings.Builder
	for _, s := range t {
		if s.name == "" {
			b.WriteString(s.lit)
		} else {
			b.WriteString(vals[s.name])
		}
	}
	return b.String()
}

// splitLine splits a command line with shell quoting rules and nothing else:
// no environment expansion, no command substitution, no comments. A shell
// operator outside quotes is an error, since there is no shell to run it.
func splitLine(line string) ([]string, error) {
	p := &shellwords.Parser{} // ParseEnv, ParseBacktick and ParseComment off
	words, err := p.Parse(line)
	if err != nil {
		return nil, fmt.Errorf("command: cannot split %q: unbalanced quotes, or a parenthesis outside quotes", line)
	}
	// The parser stops at an unquoted ; & | < or > and records where, in
	// runes (at the start of a file descriptor number before a redirection).
	if p.Position >= 0 {
		runes := []rune(line)
		at := p.Position
		for at < len(runes) && !strings.ContainsRune(";&|<>", runes[at]) {
			at++
		}
		op := "?"
		if at < len(runes) {
			op = string(runes[at])
		}
		return nil, fmt.Errorf("command: %q at column %d is a shell operator, and there is no shell: quote it, or say sh -c '...' explicitly", op, at+1)
	}
	return words, nil
}

// New checks s and fills in what it leaves unset from d.
func New(s Spec, d Defaults) (*Template, error) {
	if err := protocol.ValidWorkerService(s.Service); err != nil {
		return nil, fmt.Errorf("service %q: %w", s.Service, err)
	}
	t := &Template{service: s.Service, description: s.Description, command: s.Command, params: map[string]*param{}}
	words := s.Command.Args
	if words == nil {
		var err error
		if words, err = splitLine(s.Command.Line); err != nil {
			return nil, err
		}
	}
	if len(words) == 0 || words[0] == "" {
		return nil, errors.New("command: no program")
	}

	var defs []inlineDefault
	for i, w := range words {
		if strings.IndexByte(w, 0) >= 0 {
			return nil, fmt.Errorf("command: word %d holds a NUL byte", i+1)
		}
		tx, ds := parseText(w)
		if i == 0 && tx.hasPlaceholder() {
			return nil, fmt.Errorf("command: the program %q cannot come from a parameter", w)
		}
		t.argv = append(t.argv, tx)
		defs = append(defs, ds...)
	}
	if s.Stdin != nil {
		tx, ds := parseText(*s.Stdin)
		t.stdin = &tx
		defs = append(defs, ds...)
	}

	env := map[string]string{}
	for k, v := range d.Env {
		env[k] = v
	}
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env: bad variable name %q", k)
		}
		if strings.HasPrefix(k, "ZMWS_") {
			return nil, fmt.Errorf("env: %s: the ZMWS_ prefix is reserved for what zmws-run sets", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("env: %s: value holds a NUL byte", k)
		}
		tx, ds := parseText(v)
		t.env = append(t.env, envVar{name: k, value: tx})
		defs = append(defs, ds...)
	}
	sort.Slice(t.env, func(i, j int) bool { return t.env[i].name < t.env[j].name })

	if s.Prestart {
		if err := t.checkPrestart(); err != nil {
			return nil, err
		}
		t.prestart = true
		for _, w := range t.argv {
			t.fixed = append(t.fixed, w.expand(nil))
		}
	}

	if err := t.declare(s.Params, defs); err != nil {
		return nil, err
	}

	t.inherit = d.InheritEnv
	if s.InheritEnv != nil {
		t.inherit = s.InheritEnv
	}
	if t.inherit == nil {
		t.inherit = DefaultInheritEnv
	}
	t.inherit = slices.Clone(t.inherit)
	for _, p := range t.inherit {
		if p == "" || strings.ContainsAny(p, "=\x00") || strings.Contains(strings.TrimSuffix(p, "*"), "*") {
			return nil, fmt.Errorf("inherit_env: bad entry %q: want a NAME, a PREFIX* or *", p)
		}
	}

	t.timeout = first(time.Duration(s.Timeout), d.Timeout)
	t.grace = first(time.Duration(s.Grace), d.Grace, DefaultGrace)
	t.concurrency = first(s.Concurrency, d.Concurrency, 1)
	t.maxOutput = first(s.MaxOutput, d.MaxOutput, DefaultMaxOutput)
	t.retries = s.Retries
	switch {
	case t.retries < 0 || t.retries > 100:
		return nil, fmt.Errorf("retries %d: must be from 0 to 100", t.retries)
	case t.timeout < 0, t.grace < 0:
		return nil, errors.New("timeout and grace must not be negative")
	case t.concurrency < 0:
		return nil, fmt.Errorf("concurrency %d: must be positive", t.concurrency)
	case t.maxOutput < 0:
		return nil, fmt.Errorf("max_output %d: must be positive", t.maxOutput)
	}

	if s.User != "" {
		u, cred, err := lookupUser(s.User)
		if err != nil {
			return nil, err
		}
		t.user, t.account, t.cred = s.User, u, cred
	}

	t.workdir = first(s.Workdir, d.Workdir)
	if t.workdir != "" {
		fi, err := os.Stat(t.workdir)
		if err != nil {
			return nil, fmt.Errorf("workdir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("workdir %s: not a directory", t.workdir)
		}
	}
	return t, nil
}

// lookupUser returns the credential of user name (a name or a numeric
// id): its uid, primary group and supplementary groups. Only root can run
// a command as another user.
func lookupUser(name string) (*user.User, *syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil, nil, fmt.Errorf("user %q: no such user", name)
		}
	}
	if euid := os.Geteuid(); euid != 0 {
		return nil, nil, fmt.Errorf("user %q: zmws-run runs as uid %d, not root, and cannot run a command as another user", name, euid)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("user %q: ids %s:%s are not numbers", name, u.Uid, u.Gid)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, nil, fmt.Errorf("user %q: groups: %w", name, err)
	}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != c.Gid {
			c.Groups = append(c.Groups, uint32(g))
		}
	}
	return u, c, nil
}

// checkPrestart refuses placeholders where a prestarted process would need
// the job before it exists: in the command's words and in env values.
// Placeholders in stdin are fine: stdin is written at the hand-over.
func (t *Template) checkPrestart() error {
	const why = "a prestarted command is started before its job, so its command and env cannot depend on the job's parameters (stdin can)"
	for i, w := range t.argv {
		if w.hasPlaceholder() {
			return fmt.Errorf("prestart: word %d of the command, %q, holds a placeholder; %s", i+1, w, why)
		}
	}
	for _, e := range t.env {
		if e.value.hasPlaceholder() {
			return fmt.Errorf("prestart: env %s holds a placeholder; %s", e.name, why)
		}
	}
	return nil
}

// first returns the first of vs that is not the zero value.
func first[T comparable](vs ...T) T {
	var zero T
	for _, v := range vs {
		if v != zero {
			return v
		}
	}
	return zero
}

// declare records the parameters of the params table and of the
// placeholders, checking that their defaults agree and match their patterns.
func (t *Template) declare(table map[string]Param, defs []inlineDefault) error {
	get := func(name string) *param {
		p := t.params[name]
		if p == nil {
			p = &param{name: name}
			t.params[name] = p
		}
		return p
	}
	for _, d := range defs {
		p := get(d.name)
		if !d.hasDef {
			continue
		}
		if p.hasDef && p.def != d.def {
			return fmt.Errorf("parameter %q: two defaults, %q and %q", d.name, p.def, d.def)
		}
		p.def, p.hasDef = d.def, true
	}
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tp := table[name]
		if !paramName.MatchString(name) {
			return fmt.Errorf("params.%s: a parameter name is letters, digits, _ and -, not starting with a digit or -", name)
		}
		p := get(name)
		if tp.Default != nil {
			if p.hasDef && p.def != *tp.Default {
				return fmt.Errorf("params.%s: default %q differs from the command's {{%s:%s}}", name, *tp.Default, name, p.def)
			}
			p.def, p.hasDef = *tp.Default, true
		}
		if tp.Required != nil && *tp.Required && p.hasDef {
			return fmt.Errorf("params.%s: required, yet has a default", name)
		}
		if tp.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + tp.Pattern + `)$`)
			if err != nil {
				return fmt.Errorf("params.%s.pattern: %w", name, err)
			}
			p.re = re
		}
		p.allowDash = tp.AllowDash
		p.required = !p.hasDef
		if tp.Required != nil {
			p.required = *tp.Required
		}
	}
	for _, p := range t.params {
		if _, ok := table[p.name]; !ok {
			p.required = !p.hasDef
		}
		if p.hasDef && p.re != nil && !p.re.MatchString(p.def) {
			return fmt.Errorf("parameter %q: default %q does not match its pattern", p.name, p.def)
		}
		t.names = append(t.names, p.name)
	}
	sort.Strings(t.names)
	return nil
}

// ParamError says why a job's parameter was refused. The job fails before
// any process is started.
type ParamError struct {
	Name   string
	Reason string
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter %q: %s", e.Name, e.Reason) }

// resolve checks a job's parameters and returns the values to substitute:
// the job's parameters, plus defaults for declared ones it did not give.
func (t *Template) resolve(given map[string]string) (map[string]string, error) {
	var errs []error
	for _, k := range sortedKeys(given) {
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(given[k], 0) >= 0 {
			errs = append(errs, &ParamError{Name: k, Reason: "holds a NUL byte"})
		}
	}
	vals := make(map[string]string, len(given)+len(t.params))
	for k, v := range given {
		vals[k] = v
	}
	for _, name := range t.names {
		p := t.params[name]
		v, ok := given[name]
		switch {
		case !ok && p.hasDef:
			v = p.def
		case !ok && p.required:
			errs = append(errs, &ParamError{Name: name, Reason: "missing, and required"})
			continue
		case v == "" && p.required:
			errs = append(errs, &ParamError{Name: name, Reason: "empty, and required"})
			continue
		}
		if p.re != nil && !p.re.MatchString(v) {
			errs = append(errs, &ParamError{Name: name, Reason: fmt.Sprintf("value %s does not match %s", quoteShort(v), p.re)})
			continue
		}
		vals[name] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return vals, nil
}

// args builds the argument vector. Each template word gives exactly one
// argument, whatever the values hold. A value from the job that would start
// an argument with "-" is refused unless its parameter allows it; defaults
// are the template author's and trusted.
func (t *Template) args(vals, given map[string]string) ([]string, error) {
	argv := make([]string, len(t.argv))
	for i, w := range t.argv {
		argv[i] = w.expand(vals)
		for _, s := range w {
			if s.name == "" {
				if s.lit != "" {
					break
				}
				continue
			}
			v := vals[s.name]
			if v == "" {
				continue
			}
			if _, fromJob := given[s.name]; fromJob && v[0] == '-' && !t.params[s.name].allowDash {
				return nil, &ParamError{Name: s.name, Reason: fmt.Sprintf("value %s starts with \"-\" and would be read as an option (the template can set allow_dash)", quoteShort(v))}
			}
			break
		}
	}
	return argv, nil
}

// stdinFor returns what the command reads on stdin: the template's stdin
// text if it has one; else the job's raw input if it is not empty; else the
// values of the job's parameters in name order, each ending with a newline.
func (t *Template) stdinFor(input [][]byte, vals, given map[string]string) [][]byte {
	if t.stdin != nil {
		return [][]byte{[]byte(t.stdin.expand(vals))}
	}
	for _, f := range input {
		if len(f) > 0 {
			return input
		}
	}
	var out [][]byte
	for _, k := range sortedKeys(given) {
		v := given[k]
		if !strings.HasSuffix(v, "\n") {
			v += "\n"
		}
		out = append(out, []byte(v))
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// quoteShort quotes v for a message, cut to a readable length.
func quoteShort(v string) string {
	const max = 64
	if len(v) <= max {
		return fmt.Sprintf("%q", v)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", v[:cut])
}
