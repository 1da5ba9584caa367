package runner

import (
	"sort"
	"strconv"
	"strings"

	"github.com/zmws/zmws/protocol"
)

// maxEnvValue bounds a parameter value copied into ZMWS_PARAM_<NAME>: Linux
// refuses to start a program with a single environment string over 128 KiB,
// and a job should not fail to start because of a value it only reads from
// stdin or an argument.
const maxEnvValue = 32 << 10

// Names of the variables every command gets.
const (
	EnvJobID       = "ZMWS_JOB_ID"
	EnvService     = "ZMWS_SERVICE"
	EnvAttempt     = "ZMWS_ATTEMPT"
	EnvParamPrefix = protocol.ParamEnvPrefix
)

// ParamEnvName returns the variable that carries parameter name:
// protocol.ParamEnvName, "ZMWS_PARAM_" and the name upper-cased, with each
// character that is not an ASCII letter or digit replaced by "_". The
// gateway refuses two names that map to one variable.
func ParamEnvName(name string) string { return protocol.ParamEnvName(name) }

// inherits reports whether variable name passes the allow-list: an exact
// name, a PREFIX*, or "*".
func inherits(allow []string, name string) bool {
	for _, a := range allow {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

// ownVariable reports whether name is zmws's own configuration (ZMWS_* and
// ZMWSD_*, such as ZMWS_RUN_CURVE_KEY), which never reaches a command from
// zmws-run's environment, whatever the allow-list: a job sees the ZMWS_*
// variables of its job only.
func ownVariable(name string) bool {
	return strings.HasPrefix(name, "ZMWS_") || strings.HasPrefix(name, "ZMWSD_")
}

// jobEnv is what a command's environment is made of besides the parent's.
// A prestarted command has none (nil): it is started before its job.
type jobEnv struct {
	id, service string
	attempt     int
}

// environ builds a command's environment, later layers replacing earlier
// ones: the variables of base (KEY=VALUE, zmws-run's own) that the
// allow-list passes; the template's env, expanded; then ZMWS_JOB_ID,
// ZMWS_SERVICE, ZMWS_ATTEMPT and ZMWS_PARAM_<NAME> for each value in vals.
// Values longer than maxEnvValue are left out; their names are returned.
// With j nil (a prestarted command), only ZMWS_SERVICE is set, to the
// template's service; an idle command's template sets none. The result is
// sorted.
func (t *Template) environ(base []string, j *jobEnv, vals map[string]string) (env []string, skipped []string) {
	m := map[string]string{}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" && !ownVariable(k) && inherits(t.inherit, k) {
			m[k] = v
		}
	}
	if u := t.account; u != nil {
		// Inherited, these would be zmws-run's: they are the user's.
		for k, v := range map[string]string{"HOME": u.HomeDir, "USER": u.Username, "LOGNAME": u.Username} {
			if _, ok := m[k]; ok {
				m[k] = v
			}
		}
	}
	for _, e := range t.env {
		m[e.name] = e.value.expand(vals)
	}
	for _, k := range sortedKeys(vals) {
		if len(vals[k]) > maxEnvValue {
			skipped = append(skipped, k)
			continue
		}
		m[ParamEnvName(k)] = vals[k]
	}
	switch {
	case t.idle:
	case j == nil:
		m[EnvService] = t.service
	default:
		m[EnvJobID] = j.id
		m[EnvService] = j.service
		m[EnvAttempt] = strconv.Itoa(j.attempt)
	}
	env = make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, skipped
}
