package protocol

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"
)

// Values of JobView.OutputEncoding. Wire-visible, never changed.
const (
	OutputUTF8   = "utf-8"
	OutputBase64 = "base64"
)

// JobView is a job as zmws shows it outside the broker's sockets: the HTTP
// gateway's GET /jobs/{id} (and its DELETE and retry answers) and
// `zmws job -o json` give this JSON, byte for byte the same for the same
// job. It is JobInfo with the output as text when it is valid UTF-8, else
// base64, and OutputEncoding saying which (JobInfo's JSON, SERVER-JOB's,
// always has base64). docs/HTTP.md shows an example.
type JobView struct {
	ID              string            `json:"id"`
	Service         string            `json:"service"`
	Sync            bool              `json:"sync"`
	State           string            `json:"state"` // scheduled | queued | active | complete | failed
	Created         time.Time         `json:"created"`
	Started         *time.Time        `json:"started,omitempty"`
	Finished        *time.Time        `json:"finished,omitempty"`
	Attempts        int               `json:"attempts"`
	Worker          string            `json:"worker,omitempty"`
	ExitCode        *int              `json:"exit_code,omitempty"`
	Code            string            `json:"code,omitempty"`
	Error           string            `json:"error,omitempty"`
	Params          map[string]string `json:"params,omitempty"`
	Owner           string            `json:"owner,omitempty"`
	Priority        int               `json:"priority,omitempty"`
	NotBefore       *time.Time        `json:"not_before,omitempty"`      // a scheduled job's time, a retry's backoff
	Output          *string           `json:"output,omitempty"`          // nil when there is none
	OutputEncoding  string            `json:"output_encoding,omitempty"` // OutputUTF8 or OutputBase64, with Output
	OutputTruncated bool              `json:"output_truncated,omitempty"`
}

// NewJobView returns the view of j.
func NewJobView(j JobInfo) JobView {
	out, enc := EncodeOutput(j.Output, j.OutputTruncated)
	return JobView{
		ID: j.ID, Service: j.Service, Sync: j.Sync, State: j.State,
		Created: j.Created, Started: j.Started, Finished: j.Finished,
		Attempts: j.Attempts, Worker: j.Worker, ExitCode: j.ExitCode,
		Code: j.Code, Error: j.Error, Params: j.Params, Owner: j.Owner,
		Priority: j.Priority, NotBefore: j.NotBefore,
		Output: out, OutputEncoding: enc, OutputTruncated: j.OutputTruncated,
	}
}

// OutputBytes returns the job's output decoded from its encoding.
func (v JobView) OutputBytes() ([]byte, error) {
	if v.Output == nil {
		return nil, nil
	}
	switch v.OutputEncoding {
	case OutputUTF8:
		return []byte(*v.Output), nil
	case OutputBase64:
		return base64.StdEncoding.DecodeString(*v.Output)
	}
	return nil, fmt.Errorf("output_encoding %q: want %s or %s", v.OutputEncoding, OutputUTF8, OutputBase64)
}

// EncodeOutput returns output as a string (nil when empty) and its
// encoding: the text itself when it is valid UTF-8, else base64. Output cut
// at a cap (truncated) may end inside a character; that tail is dropped so
// the text stays text.
func EncodeOutput(output []byte, truncated bool) (*string, string) {
	if len(output) == 0 {
		return nil, ""
	}
	if truncated && !utf8.Valid(output) {
		for cut := 1; cut <= utf8.UTFMax-1 && cut < len(output); cut++ {
			if utf8.Valid(output[:len(output)-cut]) {
				output = output[:len(output)-cut]
				break
			}
		}
	}
	if utf8.Valid(output) {
		s := string(output)
		return &s, OutputUTF8
	}
	s := base64.StdEncoding.EncodeToString(output)
	return &s, OutputBase64
}
