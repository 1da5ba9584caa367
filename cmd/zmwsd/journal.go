package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/zmws/zmws/store"
)

// app is zmwsd's command line: serving (the default, so `zmwsd [flags]`
// serves) and the journal tools.
type app struct {
	Serve   CLI        `cmd:"" default:"withargs" help:"Run the broker (the default: zmwsd [flags] serves)."`
	Journal journalCmd `cmd:"" help:"Check the job journal, or copy out the jobs of a damaged one."`
}

type journalCmd struct {
	Check   journalCheck   `cmd:"" help:"Check DATA_DIR/zmws.db without changing it; exit 1 when it is damaged."`
	Recover journalRecover `cmd:"" help:"Copy every readable job of DATA_DIR/zmws.db into a new journal; the original is not changed."`
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
