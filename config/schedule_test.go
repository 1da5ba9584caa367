package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/zmws/zmws/broker"
)

func TestParse_Schedules(t *testing.T) {
	f := parse(t, `[broker]
heartbeat = "1s"

[[broker.schedule]]
name = "nightly"
cron = "CRON_TZ=UTC 0 3 * * *"
service = "backup"
params = { target = "s3", "full" = "yes" }
input = "all"
catch_up = "all"

[[broker.schedule]]
name = "every5"
cron = "*/5 * * * * *"
service = "PING"

[[worker]]
service = "PING"
command = "true"
`)
	want := []broker.Schedule{
		{Name: "nightly", Spec: "CRON_TZ=UTC 0 3 * * *", Service: "backup", Params: map[string]string{"target": "s3", "full": "yes"}, Input: []byte("all"), CatchUp: "all"},
		{Name: "every5", Spec: "*/5 * * * * *", Service: "PING"},
	}
	if got := f.Schedules(); !reflect.DeepEqual(got, want) {
		t.Fatalf("schedules\n got %+v\nwant %+v", got, want)
	}
	if len(f.Workers) != 1 {
		t.Fatalf("workers %+v", f.Workers)
	}
	// Or --schedule's values, in [broker].
	f = parse(t, "[broker]\nschedule = [\"tick=@every 10s=PING\"]\n")
	if got := f.Broker.Values["schedule"]; !reflect.DeepEqual(got, []string{"tick=@every 10s=PING"}) || len(f.Schedules()) != 0 {
		t.Fatalf("[broker] schedule = %#v, tables %+v", got, f.Schedules())
	}
}

// A bad spec is refused when the file is read, naming the schedule and
// the spec, at its entry's line.
func TestParse_ScheduleErrors(t *testing.T) {
	head := "[broker]\n[[broker.schedule]]\n"
	for _, tc := range []struct{ text, want string }{
		{head + "name = \"nightly\"\ncron = \"0 3 * *\"\nservice = \"S\"\n", `zmws.toml:2: schedule "nightly": cron spec "0 3 * *": `},
		{head + "name = \"n\"\ncron = \"@every 500ms\"\nservice = \"S\"\n", `zmws.toml:2: schedule "n": cron spec "@every 500ms": @every 500ms: want a whole number of seconds`},
		{head + "name = \"n\"\nservice = \"S\"\n", `zmws.toml:2: schedule "n" has no cron`},
		{head + "name = \"n\"\ncron = \"@hourly\"\n", `zmws.toml:2: schedule "n": no service`},
		{head + "cron = \"@hourly\"\nservice = \"S\"\n", `zmws.toml:2: a schedule has no name`},
		{head + "name = \"n\"\ncron = \"@hourly\"\nservice = \"S\"\ncatch_up = \"most\"\n", `zmws.toml:2: schedule "n": catch_up "most": want one, none or all`},
		{head + "name = \"n\"\ncron = 5\nservice = \"S\"\n", `zmws.toml:4: cron in [[broker.schedule]]: want a string, not an integer`},
		{head + "name = \"n\"\ncron = \"@hourly\"\nservice = \"S\"\nparams = { a = 1 }\n", `zmws.toml:6: params.a in [[broker.schedule]]: want a string, not an integer`},
		{head + "name = \"n\"\ncron = \"@hourly\"\nservice = \"S\"\nparams = \"a=1\"\n", `zmws.toml:6: params in [[broker.schedule]]: want a table of strings`},
		{head + "name = \"n\"\ncron = \"@hourly\"\nservice = \"S\"\ncolour = \"red\"\n", `zmws.toml:6: unknown key "colour" in [[broker.schedule]]`},
		{head + "name = \"n\"\ncron = \"@hourly\"\nservice = \"S\"\n[[broker.schedule]]\nname = \"n\"\ncron = \"@daily\"\nservice = \"T\"\n", `zmws.toml:6: schedule "n" is already declared on line 2`},
	} {
		_, err := Parse("zmws.toml", []byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%q)\n got %v\nwant %s...", tc.text, err, tc.want)
		}
	}
}
