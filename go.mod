module github.com/zmws/zmws

go 1.26

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/alecthomas/kong v1.17.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/mattn/go-isatty v0.0.22
	github.com/mattn/go-shellwords v1.0.16
	github.com/oklog/ulid/v2 v2.1.2
	github.com/pebbe/zmq4 v1.4.0
	github.com/rs/zerolog v1.35.1
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sys v0.46.0
	golang.org/x/term v0.44.0
)

require github.com/mattn/go-colorable v0.1.14 // indirect
