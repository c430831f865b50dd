package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"golang.org/x/term"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
)

// listFlag is a flag that takes a comma-separated list and may be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// report prints a validation error field by field, so an operator sees
// every bad flag at once.
func (c *cli) report(err error) error {
	if err == nil {
		return nil
	}
	var verr *tether.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	for _, f := range verr.Fields {
		fmt.Fprintf(c.stderr, "  %s: %s (%s)\n", f.Field, f.Message, f.Code)
	}
	return errors.New("invalid input")
}

func (c *cli) userAdd(ctx context.Context, args []string) error {
	var sc storeConfig
	var (
		username, role, first, last, email string
		passwordStdin                      bool
		scopes                             listFlag
	)
	fs := c.flagSet("user add")
	storeFlags(fs, &sc)
	fs.StringVar(&username, "username", "", "username (unique, case-insensitively)")
	fs.StringVar(&role, "role", "worker", "role: worker, manager or admin")
	fs.StringVar(&first, "first-name", "", "first name")
	fs.StringVar(&last, "last-name", "", "last name")
	fs.StringVar(&email, "email", "", "email address")
	fs.Var(&scopes, "scopes", "handset groups, comma-separated or repeated: the groups a manager manages (default: the whole fleet), or a worker is in")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input (else it is prompted for)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if username == "" {
		fmt.Fprintln(c.stderr, "tether user add: --username is required")
		return errUsage
	}
	password, err := c.password(passwordStdin)
	if err != nil {
		return err
	}
	return c.withStore(ctx, sc, func(svc *services) error {
		u, err := svc.users.Create(ctx, auth.CLI, auth.NewUser{
			Username: username, Password: password, Role: storage.Role(role),
			FirstName: first, LastName: last, Email: email, Scopes: scopes,
		})
		if err != nil {
			return c.report(err)
		}
		fmt.Fprintf(c.stderr, "created %s %s (%s)\n", u.Role, u.Username, u.ID)
		return nil
	})
}

// userResetMFA removes a user's second factors and recovery codes, for a
// person who lost theirs (an admin locked out of the console, say): every
// session of theirs ends; at their next sign-in they enroll a new factor
// where their role must have one.
func (c *cli) userResetMFA(ctx context.Context, args []string) error {
	var sc storeConfig
	var username string
	fs := c.flagSet("user reset-mfa")
	storeFlags(fs, &sc)
	fs.StringVar(&username, "username", "", "the user whose second factors to remove")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if username == "" {
		fmt.Fprintln(c.stderr, "tether user reset-mfa: --username is required")
		return errUsage
	}
	return c.withStore(ctx, sc, func(svc *services) error {
		u, err := svc.store.GetUserByUsername(ctx, username)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no user %q", username)
		}
		if err != nil {
			return err
		}
		factors := 0
		if u.MFA != nil {
			factors = len(u.MFA.Factors)
		}
		n, err := svc.users.ResetMFA(ctx, auth.CLI, u.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "removed %d second factor(s) and the recovery codes of %s %s; %d session(s) ended\n", factors, u.Role, u.Username, n)
		return nil
	})
}

// password reads a new password: the first line of stdin with
// --password-stdin, else twice from a terminal prompt. It is never a flag:
// flags show in the process list and shell history.
func (c *cli) password(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, auth.MaxPasswordLen+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	if !c.isTerminal() {
		return "", errors.New("no terminal to prompt for the password: pass --password-stdin and send it on standard input")
	}
	fmt.Fprint(c.stderr, "Password: ")
	first, err := c.readPassword()
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(c.stderr, "Again: ")
	second, err := c.readPassword()
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(first) != string(second) {
		return "", errors.New("the passwords do not match")
	}
	return string(first), nil
}

func stdinIsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func readTerminalPassword() ([]byte, error) { return term.ReadPassword(int(os.Stdin.Fd())) }

func (c *cli) deviceAdd(ctx context.Context, args []string) error {
	var sc storeConfig
	var (
		imei, label, group, mode string
		iccids, assign           listFlag
	)
	fs := c.flagSet("device add")
	storeFlags(fs, &sc)
	fs.StringVar(&imei, "imei", "", "the handset's IMEI (15 digits)")
	fs.StringVar(&label, "label", "", "a label, such as the van it rides in")
	fs.StringVar(&group, "group", "", "a group, such as a depot")
	fs.StringVar(&mode, "mode", "", "personal, shared, or group (default: its group's)")
	fs.Var(&iccids, "iccid", "ICC ID of a SIM in the handset (comma-separated or repeated)")
	fs.Var(&assign, "assign", "username allowed to use the handset (comma-separated or repeated; none: any worker)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if imei == "" {
		fmt.Fprintln(c.stderr, "tether device add: --imei is required")
		return errUsage
	}
	p := device.Payload{IMEI: imei}
	if len(iccids) > 0 {
		p.IccIDs = iccids
	}
	return c.withStore(ctx, sc, func(svc *services) error {
		d, err := svc.devices.Register(ctx, auth.CLI.Device(), device.Registration{
			Payload: p, Label: label, Group: group, AssignedUsers: assign, Mode: mode,
		})
		if err != nil {
			return c.report(err)
		}
		fmt.Fprintf(c.stderr, "registered device %s (IMEI %s)\n", d.ID, d.IMEI)
		return nil
	})
}

func (c *cli) apikeyCreate(ctx context.Context, args []string) error {
	var sc storeConfig
	var role, name string
	var nets listFlag
	fs := c.flagSet("apikey create")
	storeFlags(fs, &sc)
	fs.StringVar(&role, "role", "", "role: manager, admin, introspect or client")
	fs.StringVar(&name, "name", "", "a name to tell the key apart")
	fs.Var(&nets, "allow-from", "accept the key only from these networks: CIDR prefixes or addresses, comma-separated or repeated (default: anywhere)")
	var scopes listFlag
	fs.Var(&scopes, "scopes", "limit a manager's key to these handset groups, comma-separated or repeated (default: the whole fleet)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if role == "" {
		fmt.Fprintln(c.stderr, "tether apikey create: --role is required (manager, admin, introspect or client)")
		return errUsage
	}
	var secret string
	var key storage.APIKey
	err := c.withStore(ctx, sc, func(svc *services) error {
		var err error
		secret, key, err = svc.apiKeys.CreateKey(ctx, auth.CLI, auth.NewAPIKey{Role: storage.Role(role), Name: name, AllowFrom: nets, Scopes: scopes})
		return c.report(err)
	})
	if err != nil {
		return err
	}
	// Printed only once the store is closed and the key is surely kept: the
	// secret alone on stdout, so a script can capture it.
	fmt.Fprintln(c.stdout, secret)
	fmt.Fprintf(c.stderr, "created %s key %s; it is shown once: keep it now\n", key.Role, key.ID)
	return nil
}

// withStore opens the store sc names, runs fn with the services on it, and
// closes the store, reporting the first error.
func (c *cli) withStore(ctx context.Context, sc storeConfig, fn func(*services) error) error {
	store, err := openStore(ctx, sc, nil)
	if err != nil {
		return err
	}
	svc, err := newServices(store, c.hashParams)
	if err == nil {
		err = fn(svc)
	}
	return errors.Join(err, store.Close())
}

func (c *cli) keysRotate(ctx context.Context, args []string) error {
	var sc storeConfig
	var cfg auth.Config
	fs := c.flagSet("keys rotate")
	storeFlags(fs, &sc)
	fs.DurationVar(&cfg.AccessTTL, "access-ttl", auth.DefaultConfig().AccessTTL, "the server's --access-ttl")
	fs.DurationVar(&cfg.RenewWindow, "renew-window", auth.DefaultConfig().RenewWindow, "the server's --renew-window")
	masterFile := fs.String("master-key-file", "", "the server's --master-key-file, if it has one")
	revoke := fs.Bool("revoke", false, "delete every other key at once, for a key that may have been stolen: access tokens they signed stop working at once (apps refresh)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	master, err := loadMaster(*masterFile)
	if err != nil {
		return err
	}
	return c.withStore(ctx, sc, func(svc *services) error {
		keys, err := auth.LoadKeys(ctx, svc.store, cfg.AccessTTL+cfg.RenewWindow, time.Now, master)
		if err != nil {
			return err
		}
		ev := storage.NewEvent(ctx, time.Now(), "keys.rotate", "success", auth.CLI.String())
		if *revoke {
			ev.Reason = "old keys revoked"
			kids, err := keys.Revoke(ctx, storage.WithEvents(ev))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "new signing keys %s; every other key is deleted: the access tokens they signed no longer verify, and apps get new ones by refreshing\n", keyList(kids))
			return nil
		}
		kids, err := keys.Rotate(ctx, storage.WithEvents(ev))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "new signing keys %s; tokens signed by the old ones verify until they expire\n", keyList(kids))
		return nil
	})
}

// keyList names new signing keys: "EdDSA key_…, ES256 key_…, RS256 key_…".
func keyList(kids map[string]string) string {
	var parts []string
	for _, alg := range auth.Algorithms() {
		parts = append(parts, alg+" "+kids[alg])
	}
	return strings.Join(parts, ", ")
}

func (c *cli) deviceImport(ctx context.Context, args []string) error {
	var sc storeConfig
	var opts device.ImportOptions
	fs := c.flagSet("device import")
	storeFlags(fs, &sc)
	fs.BoolVar(&opts.DryRun, "dry-run", false, "check every row and report, writing nothing")
	fs.BoolVar(&opts.SkipInvalid, "skip-invalid", false, "register the valid rows and list the invalid ones (by default an invalid row stops the whole import)")
	file, err := c.parseWithFile(fs, args)
	if err != nil {
		return err
	}
	format := ""
	switch strings.ToLower(filepath.Ext(file)) {
	case ".csv":
		format = device.FormatCSV
	case ".xlsx":
		format = device.FormatXLSX
	default:
		fmt.Fprintln(c.stderr, "tether device import: the file must end in .csv or .xlsx")
		return errUsage
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, warnings, err := device.ReadImport(f, format)
	if err != nil {
		return c.report(err)
	}
	progress := func(done, total int) {}
	if c.stderrIsTerminal() {
		progress = func(done, total int) {
			const width = 30
			filled := width * done / max(1, total)
			fmt.Fprintf(c.stderr, "\rchecking [%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, total)
			if done == total {
				fmt.Fprintln(c.stderr)
			}
		}
	}
	return c.withStore(ctx, sc, func(svc *services) error {
		report, err := svc.devices.Import(ctx, auth.CLI.Device(), rows, warnings, opts, progress)
		for _, w := range report.Warnings {
			fmt.Fprintf(c.stderr, "warning: row %d: %s\n", w.Row, w.Message)
		}
		for _, e := range report.Errors {
			fmt.Fprintf(c.stderr, "row %d: %s: %s (%s)\n", e.Row, e.Field, e.Message, e.Code)
		}
		leftOut := ""
		if report.Invalid > 0 {
			leftOut = fmt.Sprintf(", %d rows with errors left out", report.Invalid)
		}
		switch {
		case errors.Is(err, device.ErrImportInvalid):
			return fmt.Errorf("%d rows have errors: nothing was imported (--skip-invalid imports the %d valid rows)", report.Invalid, report.Valid)
		case err != nil:
			return err
		case opts.DryRun && report.Invalid > 0 && !opts.SkipInvalid:
			return fmt.Errorf("dry run: %d of %d rows have errors", report.Invalid, report.Rows)
		case opts.DryRun:
			fmt.Fprintf(c.stderr, "dry run: %d rows would be imported%s, %d blank rows skipped; nothing written\n", report.Valid, leftOut, report.Skipped)
		default:
			fmt.Fprintf(c.stderr, "imported %d handsets%s, %d blank rows skipped\n", report.Created, leftOut, report.Skipped)
		}
		return nil
	})
}

func (c *cli) enrollmentCodeCreate(ctx context.Context, args []string) error {
	var sc storeConfig
	var (
		label, group, publicURL string
		ttl                     time.Duration
		uses                    int
	)
	fs := c.flagSet("enrollment-code create")
	storeFlags(fs, &sc)
	fs.DurationVar(&ttl, "expires-in", auth.DefaultCodeTTL, "how long the code works (1m to 720h)")
	fs.IntVar(&uses, "max-uses", 1, "how many handsets it may enroll")
	fs.StringVar(&label, "label", "", "label given to the handsets it enrolls")
	fs.StringVar(&group, "group", "", "group given to the handsets it enrolls")
	fs.StringVar(&publicURL, "public-url", "http://localhost:8080", "the address handsets reach the server at (the server's --public-url)")
	cfg := auth.DefaultConfig()
	fs.StringVar(&cfg.EnrollmentMode, "enrollment-mode", cfg.EnrollmentMode, "the server's --enrollment-mode, to warn when handsets cannot enroll themselves")
	masterFile := fs.String("master-key-file", "", "the server's --master-key-file, if it has one")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	master, err := loadMaster(*masterFile)
	if err != nil {
		return err
	}
	var code string
	err = c.withStore(ctx, sc, func(svc *services) error {
		a, err := auth.NewService(ctx, cfg, svc.store, svc.hasher, svc.validate, auth.WithMasterKey(master))
		if err != nil {
			return err
		}
		var rec storage.EnrollmentCode
		code, rec, err = a.CreateEnrollmentCode(ctx, auth.CLI, auth.NewCode{TTL: ttl, MaxUses: uses, Label: label, Group: group})
		if err != nil {
			return c.report(err)
		}
		enroll := auth.EnrollURL(publicURL, code)
		qr, err := qrcode.New(enroll, qrcode.Medium)
		if err != nil {
			return err
		}
		fmt.Fprint(c.stderr, qr.ToSmallString(false))
		fmt.Fprintf(c.stderr, "%s\nenrollment code %s: %d use(s), expires %s; it is shown once\n",
			enroll, rec.ID, rec.MaxUses, rec.ExpiresAt.Format(time.RFC3339))
		warnings := a.CodeWarnings(enroll)
		for _, w := range warnings {
			fmt.Fprintf(c.stderr, "warning: %s\n", w.Message)
		}
		if len(warnings) > 0 {
			fmt.Fprintln(c.stderr, "(this command knows the server's settings only from its own --enrollment-mode and --public-url, or their TETHER_ variables)")
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, code)
	return nil
}

func (c *cli) backup(ctx context.Context, args []string) error {
	var data, out string
	fs := c.flagSet("backup")
	fs.StringVar(&data, "data", "./data", "data directory of the embedded store (a PostgreSQL store is backed up with pg_dump)")
	fs.StringVar(&out, "out", "", "the backup file to write (created 0600)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if out == "" {
		fmt.Fprintln(c.stderr, "tether backup: --out is required")
		return errUsage
	}
	// Written beside its destination and renamed, so an interrupted backup
	// never leaves a truncated file that looks whole.
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tether-backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var n int64
	store, err := openBolt(data)
	if err != nil {
		return err
	}
	n, err = store.Backup(ctx, tmp)
	err = errors.Join(err, store.Close())
	err = errors.Join(err, tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err != nil {
		return err
	}
	if _, err := bolt.Verify(tmp.Name()); err != nil {
		return fmt.Errorf("the backup does not verify: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "backed up %s to %s (%d bytes)\n", data, out, n)
	return nil
}

func (c *cli) restore(ctx context.Context, args []string) error {
	var data string
	fs := c.flagSet("restore")
	fs.StringVar(&data, "data", "./data", "data directory to restore into")
	file, err := c.parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	version, err := bolt.Verify(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	path := filepath.Join(data, dbFile)
	if err := bolt.Restore(file, path); err != nil {
		if errors.Is(err, bolt.ErrLocked) {
			return fmt.Errorf("%s is in use by a running tether: stop it, then restore", path)
		}
		return err
	}
	fmt.Fprintf(c.stderr, "restored %s (schema %d) into %s; the previous store, if any, is %s.before-restore\n", file, version, path, path)
	return nil
}

// loadMaster reads a master key file, or returns nil for none.
func loadMaster(path string) (*auth.MasterKey, error) {
	if path == "" {
		return nil, nil
	}
	return auth.LoadMasterKey(path)
}
