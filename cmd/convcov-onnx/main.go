package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"
)

//go:embed doc.go
var docSource string

// reportVersion is the "version" field of every JSON document the commands print.
const reportVersion = 1

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"scan", "list depthwise convolutions, depth d and σ(d)", runScan},
		{"init", "rewrite depthwise filters with the closed-form covariance", runInit},
		{"verify", "prove a rewritten model against its original in ONNX Runtime", runVerify},
		{"cov", "print or save the closed-form covariance matrix", runCov},
		{"harvest", "collect trained models' filter covariances into a bank", runHarvest},
		{"transfer", "rewrite depthwise filters from a bank's covariances", runTransfer},
		{"plot", "draw covariances or filters as PNG heatmaps", runPlot},
	}
}

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer

	progressDelay time.Duration    // how long work runs before a progress bar appears
	now           func() time.Time // the clock of progress bars; nil means time.Now
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status: 0 on success, 1 on failure,
// 2 on wrong usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, &env{stdout: stdout, stderr: stderr, progressDelay: progressDelay}, args)
}

// runEnv is run with the environment given.
func runEnv(ctx context.Context, e *env, args []string) (code int) {
	stdout, stderr := e.stdout, e.stderr
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "convcov-onnx: internal error: %v\nPlease report this with the command line and the model.\n%s", r, debug.Stack())
			code = 1
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, manual())
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return runEnv(ctx, e, []string{rest[0], "-h"})
		}
		fmt.Fprint(stdout, manual())
		return 0
	}
	for _, c := range commands {
		if c.name == name {
			return exitCode(stderr, c.run(ctx, e, rest))
		}
	}
	fmt.Fprintf(stderr, "convcov-onnx: unknown command %q; run 'convcov-onnx help' for the list\n", name)
	return 2
}

// usageError is wrong usage: exit status 2.
type usageError struct {
	msg     string
	printed bool // the flag package already printed it
}

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func exitCode(stderr io.Writer, err error) int {
	var u *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		if !u.printed {
			fmt.Fprintf(stderr, "convcov-onnx: %s\n", u.msg)
		}
		return 2
	}
	fmt.Fprintf(stderr, "convcov-onnx: %v\n", err)
	return 1
}

// manual is the package comment of doc.go, the command's manual.
func manual() string {
	text := docSource
	if i := strings.Index(text, "/*\n"); i >= 0 {
		text = text[i+3:]
	}
	if i := strings.Index(text, "*/"); i >= 0 {
		text = text[:i]
	}
	return text
}

// newFlagSet makes a subcommand's flag set whose usage shows a synopsis and an example.
func newFlagSet(e *env, name, synopsis, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: convcov-onnx %s %s\n\nexample:\n  %s\n\nflags:\n", name, synopsis, example)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may come before, between or after positional arguments,
// and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error(), printed: true}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
