package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// TestDocs_JobExamples keeps docs/HTTP.md's examples of GET /jobs/{id} in
// step with the gateway: each decodes into protocol.JobView with no unknown
// field, and the same job run through a real broker and worker answers with
// the same fields and the same values (but IDs, times and the worker's
// identity).
func TestDocs_JobExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/HTTP.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Jobs\n")
	if !ok {
		t.Fatal("docs/HTTP.md has no Jobs section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var examples []string
	for rest := sec; ; {
		var block string
		_, rest, ok = strings.Cut(rest, "```json\n")
		if !ok {
			break
		}
		block, rest, _ = strings.Cut(rest, "```")
		examples = append(examples, block)
	}
	if len(examples) != 2 {
		t.Fatalf("%d JSON examples in the Jobs section, want a complete job and a failed one", len(examples))
	}

	s := newStack(t, Config{})
	// What zmws-run --jobs-dir examples/jobs.d does with these jobs.
	s.worker(t, "STR-REV", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		r := []rune(j.Params["str"])
		slices.Reverse(r)
		return []byte(string(r) + "\n"), nil
	})
	s.worker(t, "FILE-SHA256", 1, func(ctx context.Context, j *worker.Job) ([]byte, error) {
		return nil, &worker.ExitError{Code: 1, Err: errors.New("stderr: sha256sum: " + j.Params["file"] + ": No such file or directory")}
	})

	for i, ex := range examples {
		dec := json.NewDecoder(strings.NewReader(ex))
		dec.DisallowUnknownFields()
		var v protocol.JobView
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("example %d does not decode into protocol.JobView: %v\n%s", i+1, err, ex)
		}
		q := url.Values{}
		for k, val := range v.Params {
			q.Set(k, val)
		}
		resp, body := s.get(t, "/"+v.Service+"?"+q.Encode())
		if resp.StatusCode != 202 {
			t.Fatalf("submit %s: %d %s", v.Service, resp.StatusCode, body)
		}
		id := decodeJSON[map[string]string](t, body)["job_id"]
		_, body = s.get(t, "/jobs/"+id+"?wait=5s")

		docFields, realFields := decodeJSON[map[string]any](t, ex), decodeJSON[map[string]any](t, body)
		if dk, rk := sortedKeys(docFields), sortedKeys(realFields); !slices.Equal(dk, rk) {
			t.Errorf("example %d has the fields %v; a real %s job %v:\n%s", i+1, dk, v.Service, rk, body)
		}
		for k, dv := range docFields {
			switch k {
			case "id", "created", "started", "finished", "worker":
				continue
			}
			if rv := realFields[k]; !reflect.DeepEqual(dv, rv) {
				t.Errorf("example %d: %s is %v, a real job's %v", i+1, k, dv, rv)
			}
		}
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
