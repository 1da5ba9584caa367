package broker

import (
	"testing"
	"unsafe"
)

// TestJob_Size: a queued job costs its 80-byte struct plus its index entry
// and input (docs/PERFORMANCE.md: under 300 bytes per queued job beyond its
// payload). A field that grows it belongs in extra, which only some jobs
// have: one bool more made it 88 bytes once.
func TestJob_Size(t *testing.T) {
	if n := unsafe.Sizeof(job{}); n > 80 {
		t.Fatalf("job is %d bytes, want at most 80: put the new field in extra", n)
	}
}
