module github.com/zmws/zmws/tools

go 1.26

require (
	github.com/pebbe/zmq4 v1.4.0
	github.com/zmws/zmws v0.0.0
)

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.22 // indirect
	github.com/oklog/ulid/v2 v2.1.2 // indirect
	github.com/rs/zerolog v1.35.1 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.46.0 // indirect
)

replace github.com/zmws/zmws => ../
