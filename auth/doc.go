// Package auth decides who may do what on a zmws broker: CURVE key sets
// with per-key rights, the ZAP handler that admits ZeroMQ peers by their
// key, and the HTTP gateway's bearer tokens. See docs/SECURITY.md.
package auth
