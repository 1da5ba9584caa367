//go:build race

package server_test

import "time"

// onTime is how late after its time TestServer_DelayedJobsStartOnTime lets a
// delayed job start at its worker: under the race detector, which makes
// the loop, the worker and the client several times slower, and on a
// machine shared with the rest of the suite, 100 ms is missed by a few jobs
// held up by the scheduler, not by the broker (whose median stays near
// 1 ms).
const onTime = 500 * time.Millisecond
