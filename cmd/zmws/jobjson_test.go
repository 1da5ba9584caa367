package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zmws/zmws/gateway"
	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
	"github.com/zmws/zmws/worker"
)

// TestCLI_JobJSONIsTheGateways: `zmws job ID -o json` prints what GET
// /jobs/{id} answers for the same job, output encoding included (the CLI
// only indents it): for text output, binary output, and a failed job.
func TestCLI_JobJSONIsTheGateways(t *testing.T) {
	r := newRig(t)
	startWorker(t, r.worker, "BIN", func(ctx context.Context, j *worker.Job) ([]byte, error) {
		return []byte{0xff, 0x00, 0xfe, '<', '&'}, nil
	})
	zmqtest.Eventually(t, "BIN known", wait, func() bool {
		out, _, err := r.zmws(t, "", "services", "-o", "json")
		return err == nil && strings.Contains(out, `"BIN"`)
	})
	back, err := gateway.NewBroker(gateway.BrokerConfig{Broker: r.client, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	gw, err := gateway.New(gateway.Config{Backend: back})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(gw)
	t.Cleanup(hs.Close)
	for _, tc := range []struct {
		service, param string
		encoding       string
	}{
		{"STR-REV", "str=<héllo & co>", protocol.OutputUTF8},
		{"BIN", "", protocol.OutputBase64},
		{"FAIL", "", protocol.OutputUTF8},
	} {
		t.Run(tc.service, func(t *testing.T) {
			args := []string{"submit", tc.service}
			if tc.param != "" {
				args = append(args, tc.param)
			}
			id, _, err := r.zmws(t, "", args...)
			id = strings.TrimSpace(id)
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			cli, _, err := r.zmws(t, "", "job", id, "--wait", "--for", "10s", "-o", "json")
			if err != nil {
				t.Fatalf("job: %v", err)
			}
			resp, err := hs.Client().Get(hs.URL + "/jobs/" + id)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /jobs/%s: %d %s %v", id, resp.StatusCode, body, err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(cli)); err != nil {
				t.Fatalf("zmws job -o json: %v\n%s", err, cli)
			}
			if got, want := compact.String(), strings.TrimSpace(string(body)); got != want {
				t.Errorf("zmws job -o json:\n%s\nGET /jobs/%s:\n%s", got, id, want)
			}
			var v protocol.JobView
			if err := json.Unmarshal([]byte(cli), &v); err != nil || v.OutputEncoding != tc.encoding || v.Output == nil {
				t.Errorf("output %v as %q (%v), want %s", v.Output, v.OutputEncoding, err, tc.encoding)
			}
		})
	}
}
