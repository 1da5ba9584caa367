package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/zmws/zmws/store"
)

// app is zmwsd's command line: serving (the default, so `zmwsd [flags]`
// serves) and the journal tools.
type app struct {
	Version kong.VersionFlag `help:"Print zmwsd's version and exit."`

	Serve   CLI        `cmd:"" default:"withargs" help:"Run the broker (the default: zmwsd [flags] serves)."`
	Journal journalCmd `cmd:"" help:"Check the job journal, copy out the jobs of a damaged one, or give its free space back."`
}

type journalCmd struct {
	Config string `help:"The installation file (docs/CONFIG.md): --data-dir defaults to its [broker] data_dir. Default: ./zmws.toml, else /etc/zmws/zmws.toml, when one exists; an empty value for none." env:"ZMWSD_CONFIG" placeholder:"FILE"`

	Check   journalCheck   `cmd:"" help:"Check DATA_DIR/zmws.db without changing it; exit 1 when it is damaged."`
	Recover journalRecover `cmd:"" help:"Copy every readable job of DATA_DIR/zmws.db into a new journal; the original is not changed."`
	Compact journalCompact `cmd:"" help:"Give the free space of DATA_DIR/zmws.db back to the disk: copy it without its free pages and rename the copy over it. Only while zmwsd is stopped."`
}

type journalCompact struct {
	DataDir string `help:"Folder of the job journal (zmws.db)." default:"zmws-data" env:"ZMWSD_DATA_DIR"`
}

type journalCheck struct {
	DataDir string `help:"Folder of the job journal (zmws.db)." default:"zmws-data" env:"ZMWSD_DATA_DIR"`
}

type journalRecover struct {
	DataDir string `help:"Folder of the job journal (zmws.db)." default:"zmws-data" env:"ZMWSD_DATA_DIR"`
	To      string `help:"The new journal; it must not exist (default DATA_DIR/zmws-recovered.db)." placeholder:"FILE"`
}

// recoveredFile is journal recover's default --to, inside the data dir.
const recoveredFile = "zmws-recovered.db"

// journalHint is what to do about a journal OpenBolt refused.
func journalHint(dir string, err error) string {
	if errors.Is(err, store.ErrMissing) {
		return fmt.Sprintf("restore the journal from a backup, or remove %s to start with an empty one",
			filepath.Join(dir, store.MarkerFile))
	}
	return fmt.Sprintf("zmwsd journal check --data-dir %s tells what is wrong; zmwsd journal recover --data-dir %s copies the readable jobs into a new journal; or restore a backup",
		dir, dir)
}

func (c journalCheck) run(w io.Writer) error {
	path := filepath.Join(c.DataDir, store.BoltFile)
	rep, err := store.Check(path, store.BoltOptions{})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w (stop zmwsd first)", err)
		}
		return fmt.Errorf("%w\n%s", err, journalHint(c.DataDir, err))
	}
	if rep.Fresh {
		_, err = fmt.Fprintf(w, "OK: %s: no journal yet (a new data dir)\n", path)
		return err
	}
	_, err = fmt.Fprintf(w, "OK: %s: %d jobs (%d queued or active, %d finished), %d services; %d bytes, %d pages of %d bytes\n",
		path, rep.Jobs, rep.Open, rep.Finished, rep.Services, rep.Size, rep.Pages, rep.PageSize)
	if err != nil {
		return err
	}
	if rep.Failed < 0 {
		_, err = fmt.Fprintln(w, "failed index: stale, rebuilt at next start")
	} else {
		_, err = fmt.Fprintf(w, "failed index: %d failed jobs\n", rep.Failed)
	}
	return err
}

func (c journalRecover) run(w io.Writer) error {
	path := filepath.Join(c.DataDir, store.BoltFile)
	to := c.To
	if to == "" {
		to = filepath.Join(c.DataDir, recoveredFile)
	}
	rep, err := store.Salvage(path, to, store.BoltOptions{})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w (stop zmwsd first)", err)
		}
		return err
	}
	if rep.Damaged {
		fmt.Fprintf(w, "damaged: %v\n", rep.Problem)
	} else {
		fmt.Fprintf(w, "%s is sound; copied it anyway\n", path)
	}
	_, err = fmt.Fprintf(w, "saved %d jobs and %d services to %s; lost %d jobs (jobs on unreadable pages that no readable index names are not counted)\n"+
		"%s is unchanged. To use the copy, with zmwsd stopped: mv %s %s.damaged && mv %s %s\n",
		rep.Saved, rep.Services, to, rep.Lost, path, path, path, to, path)
	return err
}

func (c journalCompact) run(w io.Writer) error {
	path := filepath.Join(c.DataDir, store.BoltFile)
	rep, err := store.Compact(path, store.BoltOptions{})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w: zmwsd (or another journal command) has it open; stop zmwsd first", err)
		}
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrMissing) {
			return fmt.Errorf("%w\n%s", err, journalHint(c.DataDir, err))
		}
		return err
	}
	_, err = fmt.Fprintf(w, "compacted %s: %d jobs; %d bytes before, %d after (%d given back) in %v\n",
		path, rep.Jobs, rep.Before, rep.After, rep.Before-rep.After, rep.Elapsed.Round(time.Millisecond))
	return err
}

// openJournal opens the journal at path. When more than compactFree bytes
// of its file, and more than half of it, are free, it first compacts it:
// the copy holds less than the free space, so it takes at most a few
// seconds per GB (docs/DURABILITY.md). A failed compaction is logged and
// the journal opened as it is.
func openJournal(path string, compactFree int64, log zerolog.Logger) (*store.Bolt, error) {
	b, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil || compactFree <= 0 {
		return b, err
	}
	size, free, err := b.Space()
	if err != nil || free <= compactFree || free <= size/2 {
		return b, nil
	}
	if err := b.Close(); err != nil {
		return nil, err
	}
	log.Info().Str("journal", path).Int64("size", size).Int64("free", free).Msg("compacting the journal")
	notify(log, "STATUS=compacting the journal "+path)
	rep, err := store.Compact(path, store.BoltOptions{})
	if err != nil {
		log.Error().Err(err).Str("journal", path).Msg("compact the journal; going on without")
	} else {
		log.Info().Str("journal", path).Int64("before", rep.Before).Int64("after", rep.After).
			Int("jobs", rep.Jobs).Dur("elapsed", rep.Elapsed).Msg("journal compacted")
	}
	return store.OpenBolt(path, store.BoltOptions{})
}
