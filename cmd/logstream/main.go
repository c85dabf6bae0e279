// Command logstream is the logstream client: it tails the live stream
// over gRPC and runs the end-to-end benchmarks.
//
//	logstream tail [flags]        follow entries (see logstream tail -h)
//	logstream bench <what> [flags] measure end to end (syslog, ws, grpc, journald)
//	logstream version
//
// Each subcommand lives in its own file and registers itself in commands
// (or benchmarks) from an init function.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var (
	commands   = map[string]command{}
	benchmarks = map[string]command{}
)

func init() {
	commands["version"] = command{"print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
		fmt.Fprintln(stdout, "logstream", version)
		return nil
	}}
	commands["bench"] = command{"run an end-to-end benchmark (logstream bench -h)", runBench}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "logstream:", err)
		}
		os.Exit(1)
	}
}

func usage(w io.Writer, title string, cmds map[string]command) {
	fmt.Fprintln(w, title)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, "Usage: logstream <command> [flags]\n\nlogstream follows the logs a logstreamd collects, and measures it.\n\nCommands:", commands)
		fmt.Fprintln(stderr, "\nRun 'logstream <command> -h' for a command's flags.")
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q (try logstream -h)", args[0])
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage(stderr, "Usage: logstream bench <what> [flags]\n\nBenchmarks:", benchmarks)
		if len(args) == 0 {
			return errors.New("no benchmark given")
		}
		return nil
	}
	b, ok := benchmarks[args[0]]
	if !ok {
		return fmt.Errorf("unknown benchmark %q (try logstream bench -h)", args[0])
	}
	return b.run(ctx, args[1:], stdout, stderr)
}
