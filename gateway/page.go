package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// The paged listings, /SERVER-SERVICES and /SERVER-JOBS, answer a page at a
// time: ?limit=N (at most; the broker's default and cap apply) and
// ?after=CURSOR (the page after CURSOR). The body is the broker's JSON
// array, as before paging; a Link header with rel="next" (RFC 8288) names
// the next page, and its absence says this page is the last:
//
//	Link: </SERVER-SERVICES?after=STR-REV&limit=100>; rel="next"

// paged reports whether service is a paged listing.
func paged(service string) bool {
	return service == protocol.ServerServices || service == protocol.ServerJobs
}

// pageOptions reads ?limit= and ?after= (the last of each, when repeated).
func pageOptions(r *http.Request) (client.PageOptions, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return client.PageOptions{}, badRequest("malformed query string: %v", err)
	}
	var opt client.PageOptions
	if vs := q["limit"]; len(vs) > 0 {
		n, err := strconv.Atoi(vs[len(vs)-1])
		if err != nil || n < 1 {
			return opt, badRequest("limit %q: want a whole number of entries, 1 or more (the broker caps it; none: its default)", clip(vs[len(vs)-1]))
		}
		opt.Limit = n
	}
	if vs := q["after"]; len(vs) > 0 {
		opt.After = vs[len(vs)-1]
	}
	return opt, nil
}

// servePage answers GET /SERVER-SERVICES or /SERVER-JOBS: one page, and a
// Link to the next.
func (g *Gateway) servePage(w http.ResponseWriter, r *http.Request, service string, c *caller) {
	opt, err := pageOptions(r)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	var body []byte
	var next string
	if service == protocol.ServerServices && !c.admin() {
		// A token learns only of the services it may use, as a key does.
		body, next, err = g.ownServicesPage(r.Context(), c, opt)
	} else {
		body, next, err = g.b.QueryPage(r.Context(), service, opt)
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if next != "" {
		q := url.Values{"after": {next}}
		if opt.Limit > 0 {
			q.Set("limit", strconv.Itoa(opt.Limit))
		}
		w.Header().Set("Link", "</"+service+"?"+q.Encode()+`>; rel="next"`)
	}
	writeRaw(w, body)
}

// writeRaw answers 200 with body, which is JSON.
func writeRaw(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	w.Write([]byte("\n"))
}

// ownServicesPage fills a page of the services c may use, after
// opt.After, from as many of the broker's pages as it takes: the filter
// comes before the paging (as in the broker, for keys), so the page is
// full and its cursor names a service c may see. A token that may use few
// of many services makes this walk them all; each broker page is bounded,
// and so is what it keeps.
func (g *Gateway) ownServicesPage(ctx context.Context, c *caller, opt client.PageOptions) ([]byte, string, error) {
	limit := opt.Limit
	if limit == 0 {
		limit = protocol.DefaultServicesPage
	}
	limit = min(limit, protocol.MaxServicesPage)
	// One more than the page says whether there is a next page.
	mine := make([]protocol.ServiceInfo, 0, min(limit+1, 64))
	after := opt.After
	for len(mine) <= limit {
		body, next, err := g.b.QueryPage(ctx, protocol.ServerServices, client.PageOptions{Limit: protocol.MaxServicesPage, After: after})
		if err != nil {
			return nil, "", err
		}
		var page []protocol.ServiceInfo
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, "", fmt.Errorf("SERVER-SERVICES reply: %w: %w", client.ErrBadReply, err)
		}
		for _, s := range page {
			if c.mayUse(s.Name) {
				if mine = append(mine, s); len(mine) > limit {
					break
				}
			}
		}
		if next == "" {
			break
		}
		if next == after {
			return nil, "", fmt.Errorf("SERVER-SERVICES gave cursor %q again: %w", next, client.ErrBadReply)
		}
		after = next
	}
	next := ""
	if len(mine) > limit {
		mine = mine[:limit]
		next = mine[limit-1].Name
	}
	body, err := json.Marshal(mine)
	return body, next, err
}

// allOption reads /SERVER-WORKERS?all=: the gone workers too. ?all alone
// and any strconv.ParseBool truth (1, true) ask for them; 0 and false do
// not; the last of several counts.
func allOption(r *http.Request) (bool, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false, badRequest("malformed query string: %v", err)
	}
	vs := q["all"]
	if len(vs) == 0 {
		return false, nil
	}
	v := vs[len(vs)-1]
	if v == "" {
		return true, nil
	}
	all, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("all %q: want 1 or true (the gone workers too), 0 or false", clip(v))
	}
	return all, nil
}
