package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv marks a run of the test binary as a child command; its first
// argument says what to do. Commands started by the runner see it because
// the test templates put it in their env.
const childEnv = "RUNNER_TEST_CHILD"

// hostEnv makes a run of the test binary a zmws-run stand-in: a prestart
// handler whose spares are "pidhang DIR" children, for a test to kill.
const hostEnv = "RUNNER_TEST_HOST"

// childVars is the environment a test template gives its child command:
// childEnv; GORACE, since a -race child would otherwise sleep a second
// before exiting; and under go test -cover the test's GOCOVERDIR, since
// the runner passes none of its own environment on and an instrumented
// child without one warns on stderr, which the tests read.
func childVars() map[string]string {
	env := map[string]string{childEnv: "1", "GORACE": "atexit_sleep_ms=0"}
	if dir := os.Getenv("GOCOVERDIR"); dir != "" {
		env["GOCOVERDIR"] = dir
	}
	return env
}

func TestMain(m *testing.M) {
	if IsInit() {
		Init()
	}
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(os.Args[1:]))
	}
	if dir := os.Getenv(hostEnv); dir != "" {
		os.Exit(host(dir))
	}
	os.Exit(m.Run())
}

// host keeps a prestart handler with one spare until it is killed.
func host(dir string) int {
	tm, err := New(Spec{Service: "HOST", Prestart: true,
		Command: Command{Args: []string{os.Args[0], "pidhang", dir}},
		Env:     childVars()}, Defaults{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	NewHandler(tm, Config{})
	select {}
}

// child plays the command. Modes:
//
//	echo                 copy stdin to stdout
//	exit N [MSG]         write MSG to stderr, exit N
//	stderr N             write N bytes to stderr, exit 1
//	big N                write N bytes to stdout
//	args ...             print the arguments as a JSON array
//	env                  read stdin, print the environment, one variable a line
//	pwd                  print the working directory
//	touch FILE ...       create FILE, then print the other arguments
//	slow FILE            print "one", wait until FILE exists, print "two"
//	hang                 print "ready", then sleep
//	ignoreterm           ignore SIGTERM, print the pid, then sleep
//	termexit0            exit 0 on SIGTERM; print "ready", then sleep
//	grandchild           start "ignoreterm" as a child, print both pids,
//	                     ignore SIGTERM and sleep
//	killself             die of SIGKILL
//	pidecho DIR          create DIR/PID, copy stdin to stdout after a line
//	                     with the PID, then create DIR/PID.ran
//	pidexit DIR          create DIR/PID, print the PID, exit without
//	                     reading stdin
//	pidhang DIR          create DIR/PID, then sleep a minute without
//	                     reading stdin
func child(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "child: no mode")
		return 2
	}
	mode, args := args[0], args[1:]
	switch mode {
	case "echo":
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "exit":
		code, _ := strconv.Atoi(args[0])
		if len(args) > 1 {
			fmt.Fprint(os.Stderr, args[1])
		}
		return code
	case "stderr":
		n, _ := strconv.Atoi(args[0])
		for i := range n {
			os.Stderr.Write([]byte{byte('a' + i%26)})
		}
		return 1
	case "big":
		n, _ := strconv.Atoi(args[0])
		line := []byte(strings.Repeat("x", 99) + "\n")
		for n > 0 {
			k := min(n, len(line))
			os.Stdout.Write(line[:k])
			n -= k
		}
	case "args":
		json.NewEncoder(os.Stdout).Encode(args)
	case "env":
		io.Copy(io.Discard, os.Stdin)
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
	case "pwd":
		wd, _ := os.Getwd()
		fmt.Println(wd)
	case "touch":
		os.WriteFile(args[0], nil, 0o600)
		fmt.Println(strings.Join(args[1:], " "))
	case "slow":
		fmt.Println("one")
		for {
			if _, err := os.Stat(args[0]); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond) // the child polls; the test waits on its output
		}
		fmt.Println("two")
	case "hang":
		fmt.Println("ready")
		time.Sleep(time.Hour) // the hung command: it ends when killed
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println(os.Getpid())
		time.Sleep(time.Hour) // until SIGKILL: it ignores SIGTERM
	case "termexit0":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		return 0
	case "grandchild":
		signal.Ignore(syscall.SIGTERM)
		gc := exec.Command(os.Args[0], "ignoreterm")
		gc.Env = append(os.Environ(), childEnv+"=1")
		out, _ := gc.StdoutPipe()
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var gpid int
		fmt.Fscan(out, &gpid) // the grandchild is up and ignores SIGTERM
		fmt.Printf("%d %d\n", os.Getpid(), gpid)
		time.Sleep(time.Hour) // until SIGKILL: it ignores SIGTERM
	case "pidecho":
		pid := strconv.Itoa(os.Getpid())
		os.WriteFile(filepath.Join(args[0], pid), nil, 0o600)
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.WriteFile(filepath.Join(args[0], pid+".ran"), nil, 0o600)
		fmt.Printf("%s\n%s", pid, in)
	case "pidexit":
		pid := strconv.Itoa(os.Getpid())
		os.WriteFile(filepath.Join(args[0], pid), nil, 0o600)
		fmt.Println(pid)
	case "pidhang":
		os.WriteFile(filepath.Join(args[0], strconv.Itoa(os.Getpid())), nil, 0o600)
		time.Sleep(time.Minute) // never reads stdin
	case "killself":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour) // while the signal lands
	default:
		fmt.Fprintln(os.Stderr, "child: unknown mode", mode)
		return 2
	}
	return 0
}
