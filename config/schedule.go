package config

import (
	"github.com/BurntSushi/toml"

	"github.com/zmws/zmws/broker"
)

// Schedule is a [[broker.schedule]] entry: a recurring job zmwsd fires
// (docs/SCHEDULES.md). zmwsd runs these beside those of --schedule.
type Schedule struct {
	broker.Schedule
	Line int  // of its [[broker.schedule]] header
	bad  bool // a key of it was reported already
}

// scheduleKeys are the keys of a [[broker.schedule]] entry; they set no
// flag.
var scheduleKeys = []string{"name", "cron", "service", "params", "input", "catch_up"}

// Schedules returns the [[broker.schedule]] entries, in the order of the file.
func (f *File) Schedules() []broker.Schedule {
	out := make([]broker.Schedule, len(f.schedules))
	for i, s := range f.schedules {
		out[i] = s.Schedule
	}
	return out
}

// isScheduleTable reports whether k is [[broker.schedule]] or under it.
func isScheduleTable(md toml.MetaData, k toml.Key) bool {
	return len(k) > 1 && k[0] == "broker" && k[1] == "schedule" && md.Type("broker", "schedule") == "ArrayHash"
}

// scheduleKey takes one key of the file under [[broker.schedule]]: the
// header itself (a new entry) or a key of the last entry, whose values
// TOML decoded into entries.
func (p *parser) scheduleKey(k toml.Key, entries []map[string]any, line int, bad map[string]bool) {
	if len(k) == 2 {
		p.f.schedules = append(p.f.schedules, Schedule{Line: line})
		return
	}
	i := len(p.f.schedules) - 1
	if i < 0 || i >= len(entries) {
		return // cannot be: TOML puts keys under the last [[broker.schedule]]
	}
	s, v := &p.f.schedules[i], entries[i][k[2]]
	if len(k) > 3 {
		if k[2] != "params" {
			p.errorf(line, "%s: want a string, not a table", k[2])
		}
		return // params.NAME: taken with params
	}
	switch k[2] {
	case "name", "cron", "service", "input", "catch_up":
		str, ok := v.(string)
		if !ok {
			p.errorf(line, "%s in [[broker.schedule]]: want a string, not %s", k[2], typeName(v))
			s.bad = true
			return
		}
		switch k[2] {
		case "name":
			s.Name = str
		case "cron":
			s.Spec = str
		case "service":
			s.Service = str
		case "input":
			s.Input = []byte(str)
		case "catch_up":
			s.CatchUp = str
		}
	case "params":
		m, ok := v.(map[string]any)
		if !ok {
			p.errorf(line, "params in [[broker.schedule]]: want a table of strings, like params = { day = \"mon\" }, not %s", typeName(v))
			s.bad = true
			return
		}
		s.Params = make(map[string]string, len(m))
		for name, pv := range m {
			str, ok := pv.(string)
			if !ok {
				p.errorf(line, "params.%s in [[broker.schedule]]: want a string, not %s", name, typeName(pv))
				s.bad = true
				continue
			}
			s.Params[name] = str
		}
	default:
		p.errorf(line, "unknown key %q in [[broker.schedule]]: the keys are %s", k[2], or(scheduleKeys))
		bad[k[:3].String()] = true
		s.bad = true
	}
}

// checkSchedules checks each [[broker.schedule]] entry as zmwsd will
// (broker.Schedule.Check: a name, a cron spec that parses, a service),
// and that no two share a name.
func (p *parser) checkSchedules() {
	taken := map[string]int{}
	for _, s := range p.f.schedules {
		if s.bad {
			continue
		}
		if s.Spec == "" && s.Name != "" {
			p.errorf(s.Line, "schedule %q has no cron: add cron = \"...\" (five fields, six with seconds, or @every 10s, @hourly ...)", s.Name)
			continue
		}
		if err := s.Check(); err != nil {
			p.errorf(s.Line, "%v", err)
			continue
		}
		if prev, dup := taken[s.Name]; dup {
			p.errorf(s.Line, "schedule %q is already declared on line %d", s.Name, prev)
			continue
		}
		taken[s.Name] = s.Line
	}
}
