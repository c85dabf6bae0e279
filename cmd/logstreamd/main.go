// Command logstreamd is the logstream daemon: it collects logs from the
// journal and syslog, publishes them on NATS subjects, and serves them to
// browsers (WebSocket), programs (gRPC) and any NATS subscriber.
//
// main only wires: it loads the configuration, builds each component from
// its section, runs them together and stops them in order on SIGINT or
// SIGTERM — sources first, then the publisher's drain, then delivery,
// then the embedded NATS server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "logstreamd:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstreamd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (default: none, every key at its default)")
	checkPath := fs.String("check-config", "", "validate the configuration `file` and exit")
	printDefaults := fs.Bool("print-defaults", false, "print the default configuration as YAML and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: logstreamd [-config FILE]

logstreamd collects logs from the systemd journal and syslog, publishes
them on NATS subjects logs.<host>.<service>.<level>, and serves them live
to browsers (http://127.0.0.1:8514/), gRPC clients and NATS subscribers.
With no configuration it runs an embedded NATS server on 127.0.0.1:4222.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	switch {
	case *showVersion:
		fmt.Fprintln(stdout, "logstreamd", version)
		return nil
	case *printDefaults:
		cfg := defaultConfig()
		return yaml.NewEncoder(stdout).Encode(cfg)
	case *checkPath != "":
		if _, err := loadConfig(*checkPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", *checkPath)
		return nil
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	d, err := newDaemon(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	return d.run(ctx)
}
