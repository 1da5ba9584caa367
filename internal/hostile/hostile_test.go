package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestHostileShort is a short scripts/hostile-multipart: attacks of 1.5 s
// (at most 768 MiB each; whole messages of 100 MiB), and zmwsd must be back within 64 MiB of its
// baseline after each, within 30 s of the peer leaving (zmwsd looks at its
// memory every second here, --mem-trim=1s). Peers without an authorized
// key must not make a CURVE zmwsd grow at all. ZMWS_HOSTILE_BIN measures
// another zmwsd binary instead (one that reads a whole message before
// bounding it, as zmwsd once did, fails).
// TestMain lets the test binary play the CURVE peer (see endlessCurve).
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(peerEnv); ok {
		fmt.Fprintln(os.Stderr, "hostile: curve peer:", curvePeer(spec))
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func TestHostileShort(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile test: builds and runs zmwsd, sends it gigabytes (skipped with -short)")
	}
	cfg := defaultConfig()
	cfg.Attack = 1500 * time.Millisecond
	cfg.MaxBytes = 768 << 20
	cfg.PerMsg = 100 // 100 MiB messages: past --max-msg-bytes
	cfg.Settle = 30 * time.Second
	cfg.WorkDir = t.TempDir()
	if cfg.Bin = os.Getenv("ZMWS_HOSTILE_BIN"); cfg.Bin == "" {
		cfg.ZmwsdArgs = []string{"--mem-trim=1s"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, cfg, &out)
	t.Logf("hostile output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 7 {
		t.Fatalf("%d scenarios measured, want 7", len(res))
	}
	for _, r := range res {
		if !r.within {
			t.Errorf("%s: zmwsd at %s %.1f s after the peer left, baseline %s", r.name, size(r.after), r.settled.Seconds(), size(r.baseline))
		}
		switch r.name {
		case "curve-stranger", "curve-nohello", "curve-unknown":
			if r.peak > r.baseline+cfg.Bound {
				t.Errorf("%s: a peer without an authorized key made zmwsd grow to %s (baseline %s)", r.name, size(r.peak), size(r.baseline))
			}
		case "curve-client":
			if r.sent < int64(cfg.Frame)*8 {
				t.Errorf("curve-client: only %s reached the broker: the attack did not happen", size(r.sent))
			}
		}
	}
}
