package protocol

import (
	"strings"
	"testing"
)

func TestParamEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"str":    "ZMWS_PARAM_STR",
		"job-id": "ZMWS_PARAM_JOB_ID",
		"Job_Id": "ZMWS_PARAM_JOB_ID",
		"a.b c":  "ZMWS_PARAM_A_B_C",
		"é":      "ZMWS_PARAM__",
		"":       "ZMWS_PARAM_",
	} {
		if got := ParamEnvName(in); got != want {
			t.Errorf("ParamEnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckParamNames(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string // "" for no error, else a part of it
	}{
		{nil, ""},
		{map[string]string{"a": "1", "b": "2", "job_id": "3"}, ""},
		{map[string]string{"job-id": "1", "job_id": "2"}, `"job-id" and "job_id" are both ZMWS_PARAM_JOB_ID`},
		{map[string]string{"x": "1", "X": "2"}, "ZMWS_PARAM_X"},
		{map[string]string{"": "1"}, "empty name"},
	} {
		err := CheckParamNames(tc.params)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.params, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want it to say %q", tc.params, err, tc.want)
		}
	}
}
