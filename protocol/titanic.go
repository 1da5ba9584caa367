package protocol

// Titanic (9/TSP, the Titanic Service Protocol) services, which the broker
// serves itself over its job journal, so the Guide's disconnected-reliability
// clients (ticlient) work against zmwsd unchanged. docs/PROTOCOL.md,
// "Titanic", has the frames.
const (
	TitanicPrefix = "titanic."
	// TitanicRequest takes [service, request frames...]: the request
	// becomes an async job of service; the reply is [TSPOK, job ID].
	TitanicRequest = "titanic.request"
	// TitanicReply takes [job ID]: [TSPOK, output] once the job completed,
	// [TSPPending] while it is queued or running.
	TitanicReply = "titanic.reply"
	// TitanicClose takes [job ID]: the job is deleted, [TSPOK].
	TitanicClose = "titanic.close"
)

// TSP status frames: the first frame of every Titanic reply. Wire-visible,
// never changed. A reply other than TSPOK and TSPPending goes on with two
// frames, the zmws error code and a text for people, which Titanic
// clients ignore.
const (
	TSPOK      = "200" // done: the job's ID, its output, or the close
	TSPPending = "300" // the job is queued or running: ask again later
	TSPUnknown = "400" // an unknown or closed job ID, or a request refused for good (bad input, unknown service, forbidden): do not retry
	TSPError   = "500" // the job failed, or the broker cannot take the request now (queue full, rate limited, journal failing): try again later
	// TSPNotImplemented answers a titanic.* name that is none of the
	// three, as 8/MMI answers an unknown mmi.* name: 9/TSP defines no
	// code for it.
	TSPNotImplemented = "501"
)

// TSPStatus is the Titanic status of a refusal with code (one of the
// Code* constants): TSPError for what may pass (a full queue, a rate
// limit, a failing journal, a shutdown), TSPUnknown for the rest.
func TSPStatus(code string) string {
	switch code {
	case CodeQueueFull, CodeRateLimited, CodeStoreUnavailable, CodeShutdown:
		return TSPError
	}
	return TSPUnknown
}
