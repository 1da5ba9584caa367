package protocol

import "fmt"

// Dialect says how a zmws library (worker or client) speaks to its broker:
// with the zmws extensions, plain 7/MDP or 18/MDP, or whichever the broker
// answers (docs/PROTOCOL.md, "Against a plain Majordomo broker").
type Dialect string

// Dialects. Their names are those of the --protocol flags and config keys.
const (
	// DialectAuto finds out what the broker speaks: 18/MDP with the zmws
	// extensions first, plain 7/MDP when the broker stays silent.
	DialectAuto Dialect = "auto"
	// DialectZMWS is 18/MDP with the meta frame: a zmws broker.
	DialectZMWS Dialect = "zmws"
	// DialectMDP1 is plain 7/MDP (MDPC01, MDPW01).
	DialectMDP1 Dialect = "mdp1"
	// DialectMDP2 is plain 18/MDP (MDPC02, MDPW02), no meta frame.
	DialectMDP2 Dialect = "mdp2"
)

// Dialects lists the valid dialects, for flags' enums and messages.
var Dialects = []Dialect{DialectAuto, DialectZMWS, DialectMDP1, DialectMDP2}

// ParseDialect returns the dialect named s; "" is DialectAuto.
func ParseDialect(s string) (Dialect, error) {
	if s == "" {
		return DialectAuto, nil
	}
	for _, d := range Dialects {
		if string(d) == s {
			return d, nil
		}
	}
	return "", fmt.Errorf("protocol: unknown dialect %q (want auto, zmws, mdp1 or mdp2)", s)
}

// Plain reports whether d speaks Majordomo without the zmws extensions.
func (d Dialect) Plain() bool { return d == DialectMDP1 || d == DialectMDP2 }

// Version is the MDP version d speaks; V2 for auto and zmws.
func (d Dialect) Version() Version {
	if d == DialectMDP1 {
		return V1
	}
	return V2
}

// Describe names d's wire protocol for logs: "18/MDP+zmws", "7/MDP", "18/MDP".
func (d Dialect) Describe() string {
	switch d {
	case DialectMDP1:
		return "7/MDP"
	case DialectMDP2:
		return "18/MDP"
	case DialectZMWS:
		return "18/MDP+zmws"
	}
	return "auto"
}
