//go:build !race

package server_test

import "time"

// onTime is how late after its time TestServer_DelayedJobsStartOnTime lets a
// delayed job start at its worker.
const onTime = 100 * time.Millisecond
