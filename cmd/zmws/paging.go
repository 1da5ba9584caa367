package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/zmws/zmws/client"
)

// Paging is the flags of a paged listing (services, finished jobs): all of
// it by default, fetched a page at a time; --limit shows the first N and
// says how to go on.
type Paging struct {
	Limit int    `help:"Show at most this many, then say how to see the rest (0: all of them)." placeholder:"N"`
	After string `help:"Start after this cursor: what a listing cut by --limit said to go on with." placeholder:"CURSOR"`
}

// fetchPages returns a listing's fetch for list: pages of size max (or fewer,
// to end at --limit) from --after on, until the listing or --limit ends.
// When --limit cut it short, it tells on stderr how to go on (stdout keeps
// only the listing, so -o json stays one JSON array).
func fetchPages[T any](p Paging, e *env, what string, page func(*client.Client, context.Context, client.PageOptions) ([]T, string, error), max int) func(*client.Client, context.Context) ([]T, error) {
	return func(cl *client.Client, ctx context.Context) ([]T, error) {
		if p.Limit < 0 {
			return nil, fmt.Errorf("--limit %d: want 0 (all) or more", p.Limit)
		}
		items := []T{}
		after := p.After
		for {
			opt := client.PageOptions{After: after, Limit: max}
			if p.Limit > 0 {
				opt.Limit = min(max, p.Limit-len(items))
			}
			got, next, err := page(cl, ctx, opt)
			if err != nil {
				return nil, err
			}
			items = append(items, got...)
			if p.Limit > 0 && len(items) >= p.Limit {
				items = items[:p.Limit] // a broker that does not page sends all
				if next != "" {
					fmt.Fprintf(e.stderr, "zmws: more %s follow: add --after %s\n", what, shellQuote(next))
				}
				return items, nil
			}
			if next == "" {
				return items, nil
			}
			if next == after {
				return nil, fmt.Errorf("the broker gave cursor %q for the page after %q again: %w", next, after, client.ErrBadReply)
			}
			after = next
		}
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:+@%,=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
