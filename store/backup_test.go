package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmws/zmws/internal/zmqtest"
	"github.com/zmws/zmws/protocol"
)

// A backup taken while commits go on is a sound journal holding every job
// committed before it began; a second one replaces the first.
func TestBolt_BackupWhileCommitting(t *testing.T) {
	dir := t.TempDir()
	s := openBolt(t, filepath.Join(dir, BoltFile), BoltOptions{})
	commit(t, s, &Batch{Services: []ServiceRecord{{Name: "echo", FirstSeen: t0}}})
	for i := range 20 {
		var b Batch
		for j := range 50 {
			b.Jobs = append(b.Jobs, job(fmt.Sprintf("01A%02d%02d", i, j), protocol.JobQueued, time.Time{}))
		}
		commit(t, s, &b)
	}

	// Commits beside the backups, each job its own transaction.
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		committed atomic.Int64
	)
	t.Cleanup(func() { stop.Store(true); wg.Wait() }) // before the journal closes
	wg.Go(func() {
		for n := 0; !stop.Load(); n++ {
			r := job(fmt.Sprintf("01B%06d", n), protocol.JobComplete, t0.Add(time.Duration(n)*time.Second))
			r.Output = make([]byte, 2000)
			if err := s.Commit(&Batch{Jobs: []*JobRecord{r}}); err != nil {
				t.Errorf("Commit beside the backup: %v", err)
				return
			}
			committed.Add(1)
		}
	})
	to := filepath.Join(dir, "backup", BoltFile)
	first, err := s.Backup(to)
	if err != nil {
		t.Fatal(err)
	}
	// The second backup sees more.
	zmqtest.Eventually(t, "50 commits beside the backup", 10*time.Second, func() bool { return committed.Load() >= 50 })
	second, err := s.Backup(to)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if first.Jobs < 1000 || second.Jobs <= first.Jobs || second.Path != to || second.Size <= 0 {
		t.Errorf("backups %+v then %+v: want at least the 1000 jobs committed before, then more", first, second)
	}
	if _, err := os.Stat(to + backupSuffix); !os.IsNotExist(err) {
		t.Errorf("temporary copy left behind: %v", err)
	}
	if fi, err := os.Stat(to); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != second.Size {
		t.Errorf("backup file %v, %v: want mode 0600 and %d bytes", fi, err, second.Size)
	}

	// The copy is a journal zmwsd can start on: what restoring it gives.
	rep, err := Check(to, BoltOptions{})
	if err != nil || rep.Jobs != second.Jobs || rep.Services != 1 {
		t.Fatalf("Check(backup) = %+v, %v; want %d jobs, 1 service", rep, err, second.Jobs)
	}
	b := openBolt(t, to, BoltOptions{})
	snap := load(t, b, 10)
	if len(snap.Jobs) != 1000 || len(snap.Services) != 1 {
		t.Errorf("restored: %d open jobs, %d services; want 1000 and 1", len(snap.Jobs), len(snap.Services))
	}
	wantJob(t, b, "01A1949", job("01A1949", protocol.JobQueued, time.Time{}))
}

func TestBolt_BackupRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, BoltFile)
	s := openBolt(t, path, BoltOptions{})
	put(t, s, job("01A", protocol.JobQueued, time.Time{}))
	for _, to := range []string{path, filepath.Join(dir, ".", BoltFile)} {
		if _, err := s.Backup(to); err == nil || !strings.Contains(err.Error(), "the journal itself") {
			t.Errorf("Backup(%s) onto the journal: %v", to, err)
		}
	}
	// A stale temporary file (a backup that died) is replaced.
	to := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(to+backupSuffix, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Backup(to); err != nil || rep.Jobs != 1 {
		t.Errorf("Backup over a stale temporary file: %+v, %v", rep, err)
	}
	// A folder it cannot write leaves nothing behind and says where.
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anyway
		if _, err := s.Backup(filepath.Join(ro, BoltFile)); err == nil || !strings.Contains(err.Error(), ro) {
			t.Errorf("Backup into a read-only folder: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(to); !errors.Is(err, ErrClosed) {
		t.Errorf("Backup after Close: %v, want ErrClosed", err)
	}
}
