// Package curve handles zmws's CURVE keys: key files (zmws keygen), the
// socket options of a CURVE client (a zmws client or worker) and server (the
// broker), and a watch on a client socket's handshakes, so that a broker
// refusing a key is a clear error instead of a silent wait.
//
// A key pair is two files: NAME.key holds the secret key (Z85, mode 0600)
// and NAME.pub the public key (Z85, one line), each with an optional
// comment line ("# ...") naming it. Every file is checked when it is loaded:
// one key of 40 Z85 characters, a secret key readable by its owner only and
// matching its NAME.pub when one lies beside it.
//
//	kp, err := curve.LoadSecret("alice.key")
//	broker, err := curve.LoadPublic("broker.pub")
//	keys := &curve.Client{Broker: broker.Key, Own: kp}
//	err = keys.Apply(sock) // before sock.Connect
package curve
