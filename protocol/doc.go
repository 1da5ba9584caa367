// Package protocol encodes and decodes the Majordomo frames zmws speaks, and
// the zmws conventions that ride in their bodies. It holds pure functions and
// data types only: no sockets, no clock, no cgo.
//
// Frames after the ROUTER identity (E = optional empty delimiter frame):
//
//	7/MDP client   REQUEST  E "MDPC01" service body...
//	               REPLY    E "MDPC01" service body...
//	18/MDP client  REQUEST  E "MDPC02" 0x01 service body...
//	               PARTIAL  E "MDPC02" 0x02 service body...
//	               FINAL    E "MDPC02" 0x03 service body...
//	7/MDP worker   READY 0x01 service [meta] | REQUEST 0x02 job "" body... |
//	               REPLY 0x03 job "" body... | HEARTBEAT 0x04 | DISCONNECT 0x05
//	               (each: E "MDPW01" cmd ...)
//	18/MDP worker  READY 0x01 | REQUEST 0x02 | PARTIAL 0x03 | FINAL 0x04 |
//	               HEARTBEAT 0x05 | DISCONNECT 0x06   (E "MDPW02" cmd ...)
//
// Decoders accept messages with and without E and record which in Form;
// encoders write the Form they are given, so each peer is answered the way it
// spoke. The address frame of worker REQUEST/REPLY/PARTIAL carries the zmws
// job ID. A body may start with a meta frame (MetaPrefix + JSON, see Meta)
// that carries parameters, job status, exit codes and errors between zmws
// peers; stock peers never see one. The Titanic (9/TSP) service names and
// status frames are in titanic.go. docs/PROTOCOL.md is the full reference.
//
//	m, err := protocol.DecodeWorker(frames)
//	if err != nil { /* peer's fault: log, DISCONNECT or drop */ }
//	out := protocol.EncodeWorker(protocol.Message{Form: m.Form, Cmd: protocol.CmdHeartbeat})
package protocol
