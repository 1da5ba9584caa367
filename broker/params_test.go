package broker_test

import (
	"strings"
	"testing"

	"github.com/zmws/zmws/broker"
	"github.com/zmws/zmws/protocol"
)

// TestBroker_ClashingParamNamesRefused: a ZeroMQ client's parameters that
// map to one ZMWS_PARAM_* variable, or an empty name, are refused as the
// gateway refuses them, and make no job.
func TestBroker_ClashingParamNamesRefused(t *testing.T) {
	b := newBroker(t, broker.Config{})
	b.HandleWorker(t0, "w1", "", readyZ("S"))
	for _, params := range []map[string]string{{"job-id": "1", "job_id": "2"}, {"": "x"}} {
		out := b.HandleClient(t0, "c1", "", zreq("S", params))
		none(t, out, protocol.ToWorker)
		_, md, _ := clientReply(t, one(t, out, protocol.ToClient, "c1"))
		if md.Status != protocol.StatusRefused || md.Code != protocol.CodeBadRequest || !strings.Contains(md.Error, "parameter") {
			t.Errorf("params %v: %+v, want refused bad_request naming the parameters", params, md)
		}
	}
	if q := b.Queue(); len(q) != 1 || q[0].Queued != 0 {
		t.Errorf("queue after refusals: %+v, want nothing queued", q)
	}
}
