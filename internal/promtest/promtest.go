// Package promtest checks metrics for tests: a scrape's text against
// promtool (Debian's prometheus package, installed when missing), and the
// Grafana dashboard of examples/grafana against the metric families a
// real scrape has.
package promtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape gets url (a /metrics endpoint) and returns its body, failing the
// test unless the answer is 200. headers are name, value pairs.
func Scrape(t *testing.T, url string, headers ...string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return body
}

// Families parses a scrape in the text format.
func Families(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, text)
	}
	return fams
}

// Value returns the value of the sample of family name whose labels
// include labels (name, value pairs): a counter's or gauge's value, a
// histogram's count; ok false when there is none.
func Value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
sample:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue sample
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// Promtool runs `promtool check metrics` on a scrape, failing the test on
// any complaint. It installs Debian's prometheus package when promtool is
// missing, and skips the test, saying why, only when it cannot be had.
func Promtool(t *testing.T, text []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil && os.Geteuid() == 0 {
		t.Log("promtool missing: apt-get install -y prometheus")
		install := exec.Command("apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus")
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, ierr := install.CombinedOutput(); ierr != nil {
			t.Logf("apt-get install prometheus: %v\n%s", ierr, out)
		}
		path, err = exec.LookPath("promtool")
	}
	if err != nil {
		t.Skipf("promtool (Debian package prometheus) is not installed and could not be installed: %v", err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// metricName finds the metric names (zmws_...) in a PromQL expression; a
// histogram's _bucket, _sum and _count series name its family.
var metricName = regexp.MustCompile(`\bzmws_[a-z_]+[a-z]\b`)

// DashboardMetrics returns the metric families the panels of the Grafana
// dashboard at path query (every "expr" in it), sorted.
func DashboardMetrics(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					for _, n := range metricName.FindAllString(s, -1) {
						for _, suffix := range []string{"_bucket", "_sum", "_count"} {
							if base, ok := strings.CutSuffix(n, suffix); ok {
								n = base
								break
							}
						}
						names = append(names, n)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	slices.Sort(names)
	return slices.Compact(names)
}
