// Command tether is the Tether server and its operator commands.
//
//	tether serve [flags]             serve the API
//	tether user add [flags]          create an account
//	tether device add [flags]        register a handset
//	tether device import FILE        register handsets from a CSV or XLSX file
//	tether apikey create [flags]     create an API key (printed alone on stdout)
//	tether enrollment-code create    make a code handsets enroll with (and its QR)
//	tether client create [flags]     register an OAuth client (its id, and secret, on stdout)
//	tether client list|delete|rotate-secret
//	                                 list, delete an OAuth client, or give it a new secret
//	tether keys rotate [flags]       start signing tokens with a new key
//	tether backup --out FILE         copy the store (server stopped; else GET /v1/admin/backup)
//	tether restore FILE              check a backup and put it in place of the store
//	tether version                   print the version
//
// Every flag can also be set with an environment variable TETHER_<FLAG>,
// such as TETHER_DATA for --data. A flag given on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"tether/auth"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// cli is what a command runs with: its streams and environment, so tests can
// run commands in-process.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// isTerminal reports whether stdin is a terminal that can prompt;
	// stderrIsTerminal whether stderr can show a progress bar.
	isTerminal       func() bool
	stderrIsTerminal func() bool
	// readPassword reads a password from the terminal without echo.
	readPassword func() ([]byte, error)
	// hashParams are the argon2id costs of new password hashes.
	hashParams auth.Params
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{
		stdin:            os.Stdin,
		stdout:           os.Stdout,
		stderr:           os.Stderr,
		getenv:           os.Getenv,
		isTerminal:       stdinIsTerminal,
		stderrIsTerminal: func() bool { return term.IsTerminal(int(os.Stderr.Fd())) },
		readPassword:     readTerminalPassword,
		hashParams:       hashParams,
	}
	os.Exit(c.run(ctx, os.Args[1:]))
}

// hashParams are the costs of new password hashes. Only the end-to-end
// tests that need many logins in little time change them.
var hashParams = auth.DefaultParams

const usage = `Tether: enrollment and authentication for company Android handsets.

Usage:
  tether serve [--addr :8080] [--data ./data | --store postgres://…] [flags]
  tether user add --username NAME [--role worker|manager|admin] [--password-stdin] [flags]
  tether user reset-mfa --username NAME
  tether device add --imei IMEI [--label L] [--group G] [flags]
  tether device import FILE.csv|FILE.xlsx [--dry-run] [--skip-invalid]
  tether apikey create --role manager|admin|introspect|client [--name N]
  tether enrollment-code create [--expires-in 24h] [--max-uses 1] [--label L] [--group G] [--public-url URL] [--enrollment-mode M]
  tether client create --public-url URL [--name N] [--redirect-uri URI]... [--public | --auth-method M] [--grant G]... [--json]
  tether client list --public-url URL [--json]
  tether client delete CLIENT_ID --public-url URL
  tether client rotate-secret CLIENT_ID --public-url URL
  tether keys rotate
  tether backup --out FILE
  tether restore FILE
  tether migrate --from DATA|FILE.db|postgres://… --to DATA|FILE.db|postgres://…
  tether ldap test --username NAME [--password-stdin | --no-password] --ldap-url URL [directory flags]
  tether events test --sink NAME [--events-config FILE | --webhook-url URL --webhook-secret-file FILE]
  tether version

The commands that use the store take --data (the embedded store's
directory) or --store (a postgres:// URL).

Run "tether COMMAND --help" for a command's flags. Every flag can also be
set as TETHER_<FLAG> in the environment (--min-os-api is TETHER_MIN_OS_API).
`

// errUsage marks a mistake in the command line; its message has been
// printed with the usage.
var errUsage = errors.New("usage")

// run runs one command and returns the process exit code: 0 on success, 2
// for a bad command line, 1 for any other failure.
func (c *cli) run(ctx context.Context, args []string) int {
	err := c.dispatch(ctx, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(c.stderr, "tether: %v\n", err)
	return 1
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub = rest[0]
	}
	switch {
	case cmd == "serve":
		return c.serve(ctx, rest)
	case cmd == "user" && sub == "add":
		return c.userAdd(ctx, rest[1:])
	case cmd == "user" && sub == "reset-mfa":
		return c.userResetMFA(ctx, rest[1:])
	case cmd == "device" && sub == "add":
		return c.deviceAdd(ctx, rest[1:])
	case cmd == "device" && sub == "import":
		return c.deviceImport(ctx, rest[1:])
	case cmd == "apikey" && sub == "create":
		return c.apikeyCreate(ctx, rest[1:])
	case cmd == "enrollment-code" && sub == "create":
		return c.enrollmentCodeCreate(ctx, rest[1:])
	case cmd == "client" && sub == "create":
		return c.clientCreate(ctx, rest[1:])
	case cmd == "client" && sub == "list":
		return c.clientList(ctx, rest[1:])
	case cmd == "client" && sub == "delete":
		return c.clientDelete(ctx, rest[1:])
	case cmd == "client" && sub == "rotate-secret":
		return c.clientRotateSecret(ctx, rest[1:])
	case cmd == "backup":
		return c.backup(ctx, rest)
	case cmd == "restore":
		return c.restore(ctx, rest)
	case cmd == "keys" && sub == "rotate":
		return c.keysRotate(ctx, rest[1:])
	case cmd == "migrate":
		return c.migrate(ctx, rest)
	case cmd == "ldap" && sub == "test":
		return c.ldapTest(ctx, rest[1:])
	case cmd == "events" && sub == "test":
		return c.eventsTest(ctx, rest[1:])
	case cmd == "version" || cmd == "--version":
		fmt.Fprintln(c.stdout, version)
		return nil
	case cmd == "help" || cmd == "-h" || cmd == "--help":
		fmt.Fprint(c.stdout, usage)
		return nil
	}
	fmt.Fprintf(c.stderr, "tether: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), usage)
	return errUsage
}

// flagSet returns a FlagSet for a command that prints its errors and help
// to stderr.
func (c *cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tether "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// parse parses args, then sets every flag not given on the command line from
// its TETHER_<FLAG> environment variable, if set.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v := c.getenv(env); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, serr)
			}
		}
	})
	return err
}

// parseWithFile parses a command that takes one file argument, before or
// among its flags.
func (c *cli) parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	return c.parseWithArg(fs, args, "name the file")
}

// parseWithArg parses a command that takes one argument, before or among
// its flags; missing says what to do without it.
func (c *cli) parseWithArg(fs *flag.FlagSet, args []string, missing string) (string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(c.stderr, "%s: %s\n", fs.Name(), missing)
		return "", errUsage
	}
	arg := fs.Arg(0)
	return arg, c.parse(fs, fs.Args()[1:])
}

// envName is the environment variable of a flag: "min-os-api" is
// "TETHER_MIN_OS_API".
func envName(flagName string) string {
	return "TETHER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
