package protocol

// Failed jobs from the journal. SERVER-JOBS and SERVER-RETRY take the
// request params below (in the meta frame) to list, or retry in bulk, the
// failed jobs the journal retains, newest first by finish time, beyond the
// broker's history (docs/PROTOCOL.md, "Failed jobs").
const (
	// ParamState selects the failed jobs: its only value is JobFailed.
	ParamState = "state"
	// ParamService keeps the jobs of one service.
	ParamService = "service"
	// ParamSince keeps the jobs that finished at or after an RFC 3339
	// instant, or within a Go duration before the broker's clock ("1h").
	ParamSince = "since"
	// ParamOwner keeps the jobs of one owner. A key that may not
	// administer sees and retries its own jobs only, whatever it says; a
	// trusted in-process client (the gateway) says on whose behalf it asks.
	ParamOwner = "owner"
)

// Bulk retries: a SERVER-RETRY of failed jobs retries at most Meta.Limit
// of them (DefaultRetryBatch when 0, at most MaxRetryBatch), so that one
// request holds the broker's loop for a bounded time; the reply's
// Meta.Next is the cursor for the next request, "" after the last.
const (
	DefaultRetryBatch = 1000
	MaxRetryBatch     = 1000
)

// RetryReport answers a bulk SERVER-RETRY: the jobs of one batch that were
// queued again and those that were not, with why.
type RetryReport struct {
	Requeued int            `json:"requeued"`
	Jobs     []string       `json:"jobs"`    // the IDs queued again
	Refused  []RetryRefusal `json:"refused"` // the others
	// Stopped says why the walk ended before the jobs did (a full queue:
	// the rest would be refused too); there is no next batch then. ""
	// when it did not stop.
	Stopped string `json:"stopped,omitempty"`
}

// RetryRefusal is one failed job a bulk retry did not queue again: a
// stable code (CodeConflict, CodeUnknownService, CodeForbidden, ...) and
// the reason for people.
type RetryRefusal struct {
	ID    string `json:"id"`
	Code  string `json:"code"`
	Error string `json:"error"`
}
