package protocol

import (
	"fmt"
	"sort"
	"strings"
)

// ParamEnvPrefix starts the environment variable that carries a job
// parameter to a command (see ParamEnvName).
const ParamEnvPrefix = "ZMWS_PARAM_"

// ParamEnvName returns the variable that carries parameter name to a
// command: ParamEnvPrefix and the name upper-cased, with each character that
// is not an ASCII letter or digit replaced by "_". Distinct names can map to
// one variable ("job-id" and "job_id"); CheckParamNames finds them.
func ParamEnvName(name string) string {
	var b strings.Builder
	b.Grow(len(ParamEnvPrefix) + len(name))
	b.WriteString(ParamEnvPrefix)
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// CheckParamNames reports an empty parameter name, or two names that map to
// one ParamEnvName (either would silently replace the other in a command's
// environment), or nil. The error names the first such pair in sorted order.
func CheckParamNames(params map[string]string) error {
	if len(params) <= 1 { // the usual case, checked without allocating
		for k := range params {
			if k == "" {
				return fmt.Errorf("a parameter has an empty name")
			}
		}
		return nil
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	seen := make(map[string]string, len(names))
	for _, k := range names {
		if k == "" {
			return fmt.Errorf("a parameter has an empty name")
		}
		env := ParamEnvName(k)
		if other, ok := seen[env]; ok {
			return fmt.Errorf("parameters %q and %q are both %s", other, k, env)
		}
		seen[env] = k
	}
	return nil
}
