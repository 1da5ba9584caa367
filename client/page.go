package client

import (
	"context"
	"fmt"
	"iter"

	"github.com/zmws/zmws/protocol"
)

// PageOptions choose one page of a paged listing (SERVER-SERVICES,
// SERVER-JOBS; see docs/PROTOCOL.md, "Paged listings").
type PageOptions struct {
	// Limit is the most entries the page may hold; 0 means the broker's
	// default (protocol.DefaultServicesPage, protocol.DefaultJobsPage),
	// and the broker caps it (protocol.MaxServicesPage, ...). A negative
	// Limit is refused with protocol.CodeBadRequest.
	Limit int
	// After is the cursor to go on from: the next cursor of the page
	// before. "" asks for the first page.
	After string
}

// QueryPage asks a paged listing for one page and returns the reply's
// frames after the meta frame and the cursor of the next page: "" when this
// page is the last (or the broker, an older one, does not page: then the
// page is the whole listing). A page may hold fewer entries than
// opt.Limit and still have a next page (the broker bounds a page's bytes
// too). QueryPage is resent like Query.
func (c *Client) QueryPage(ctx context.Context, service string, opt PageOptions) (frames [][]byte, next string, err error) {
	meta, frames, err := c.queryMeta(ctx, service, c.cfg.Retries, c.timeout(), protocol.Meta{Limit: opt.Limit, After: opt.After})
	if err != nil {
		return nil, "", err
	}
	return frames, meta.Next, nil
}

// ServicesPage returns one page of SERVER-SERVICES, by name, and the
// cursor of the next page ("" after the last).
func (c *Client) ServicesPage(ctx context.Context, opt PageOptions) ([]protocol.ServiceInfo, string, error) {
	return queryPage[protocol.ServiceInfo](ctx, c, protocol.ServerServices, opt)
}

// JobsPage returns one page of SERVER-JOBS, the finished jobs newest
// first, and the cursor of the next page ("" after the last).
func (c *Client) JobsPage(ctx context.Context, opt PageOptions) ([]protocol.JobInfo, string, error) {
	return queryPage[protocol.JobInfo](ctx, c, protocol.ServerJobs, opt)
}

// AllServices walks SERVER-SERVICES page by page from opt.After (the first
// page when empty), opt.Limit services a page, and yields each service. An
// error ends the walk, yielded with a zero ServiceInfo. A walk is not a
// snapshot: a service announced or forgotten meanwhile may or may not be
// seen, but every other is seen once, in order.
func (c *Client) AllServices(ctx context.Context, opt PageOptions) iter.Seq2[protocol.ServiceInfo, error] {
	return walk[protocol.ServiceInfo](ctx, c, protocol.ServerServices, opt)
}

// AllJobs walks SERVER-JOBS page by page, newest first, like AllServices.
// Jobs that finish during the walk are not seen (they come before its
// first page); a job that leaves the broker's history before its page is
// asked for is not seen either.
func (c *Client) AllJobs(ctx context.Context, opt PageOptions) iter.Seq2[protocol.JobInfo, error] {
	return walk[protocol.JobInfo](ctx, c, protocol.ServerJobs, opt)
}

// queryPage asks for one page whose entries are T.
func queryPage[T any](ctx context.Context, c *Client, service string, opt PageOptions) ([]T, string, error) {
	frames, next, err := c.QueryPage(ctx, service, opt)
	if err != nil {
		return nil, "", err
	}
	items, err := decodeJSON[[]T](service, frames)
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// walk yields every entry of a paged listing from opt.After on.
func walk[T any](ctx context.Context, c *Client, service string, opt PageOptions) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			items, next, err := queryPage[T](ctx, c, service, opt)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, v := range items {
				if !yield(v, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			// A cursor moves on with every page; one that does not would
			// walk for ever.
			if next == opt.After {
				yield(zero, fmt.Errorf("query %s: the broker gave cursor %q for the page after %q again: %w", service, next, opt.After, ErrBadReply))
				return
			}
			opt.After = next
		}
	}
}

// collect gathers a walk into a slice: never nil, so an empty listing is
// an empty slice, as the unpaged replies decoded.
func collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	out := []T{}
	for v, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
