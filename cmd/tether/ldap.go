package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"tether/auth"
	"tether/directory"
	"tether/storage"
)

// ldapConfig is the company directory's flags (docs/directory.md).
type ldapConfig struct {
	urls         string
	passwordFile string
	syncInterval time.Duration
	cfg          directory.Config
}

// ldapFlagOf names the flag of each directory.Config field, so a bad
// setting is reported as the operator typed it.
var ldapFlagOf = map[string]string{
	"URLs": "--ldap-url", "StartTLS": "--ldap-start-tls", "CAFile": "--ldap-ca-file",
	"BindDN": "--ldap-bind-dn", "BindPassword": "--ldap-bind-password-file",
	"UserBase": "--ldap-user-base", "UserFilter": "--ldap-user-filter", "UsernameAttribute": "--ldap-username-attribute",
	"GroupBase": "--ldap-group-base", "GroupFilter": "--ldap-group-filter",
	"WorkerGroup": "--ldap-worker-group", "ManagerGroup": "--ldap-manager-group", "AdminGroup": "--ldap-admin-group",
	"DisabledFilter":       "--ldap-disabled-filter",
	"DisplayNameAttribute": "--ldap-display-name-attribute", "FirstNameAttribute": "--ldap-first-name-attribute",
	"LastNameAttribute": "--ldap-last-name-attribute", "EmailAttribute": "--ldap-email-attribute",
	"EmployeeNumberAttribute": "--ldap-employee-number-attribute", "PasswordChangedAttribute": "--ldap-password-changed-attribute",
	"ConnectTimeout": "--ldap-connect-timeout", "OperationTimeout": "--ldap-timeout",
}

func ldapFlags(fs *flag.FlagSet, l *ldapConfig) {
	c := &l.cfg
	fs.StringVar(&l.urls, "ldap-url", "", "company directory: ldap:// or ldaps:// URLs, comma-separated, tried in order (none: directory sign-in off)")
	fs.BoolVar(&c.StartTLS, "ldap-start-tls", false, "upgrade ldap:// connections with StartTLS")
	fs.StringVar(&c.CAFile, "ldap-ca-file", "", "PEM file of the CAs the directory's certificate must chain to (default: the system's)")
	fs.StringVar(&c.BindDN, "ldap-bind-dn", "", "the service account that searches the directory")
	fs.StringVar(&l.passwordFile, "ldap-bind-password-file", "", "a file holding the service account's password (never on the command line)")
	fs.StringVar(&c.UserBase, "ldap-user-base", "", "where people are searched for (the whole subtree)")
	fs.StringVar(&c.UserFilter, "ldap-user-filter", directory.DefaultUserFilter, "finds a person by the name they sign in with; Active Directory: (sAMAccountName={username})")
	fs.StringVar(&c.UsernameAttribute, "ldap-username-attribute", "", "the attribute holding the sign-in name (default: the one --ldap-user-filter compares)")
	fs.StringVar(&c.GroupBase, "ldap-group-base", "", "where groups are searched for (none: a person's memberOf attribute)")
	fs.StringVar(&c.GroupFilter, "ldap-group-filter", directory.DefaultGroupFilter, "finds the groups a person is a member of")
	fs.StringVar(&c.WorkerGroup, "ldap-worker-group", "", "DN of the group whose members are workers")
	fs.StringVar(&c.ManagerGroup, "ldap-manager-group", "", "DN of the group whose members are managers")
	fs.StringVar(&c.AdminGroup, "ldap-admin-group", "", "DN of the group whose members are admins (where any group is set, people in none cannot sign in)")
	fs.StringVar(&c.DisabledFilter, "ldap-disabled-filter", "", "people it matches cannot sign in; Active Directory: (userAccountControl:1.2.840.113556.1.4.803:=2)")
	fs.StringVar(&c.DisplayNameAttribute, "ldap-display-name-attribute", directory.DefaultDisplayNameAttribute, "attribute of the display name")
	fs.StringVar(&c.FirstNameAttribute, "ldap-first-name-attribute", directory.DefaultFirstNameAttribute, "attribute of the first name")
	fs.StringVar(&c.LastNameAttribute, "ldap-last-name-attribute", directory.DefaultLastNameAttribute, "attribute of the last name")
	fs.StringVar(&c.EmailAttribute, "ldap-email-attribute", directory.DefaultEmailAttribute, "attribute of the email address")
	fs.StringVar(&c.EmployeeNumberAttribute, "ldap-employee-number-attribute", directory.DefaultEmployeeNumberAttribute, "attribute of the employee number")
	fs.StringVar(&c.PasswordChangedAttribute, "ldap-password-changed-attribute", directory.DefaultPasswordChangedAttribute, "attribute of when the password last changed (a change ends every session); Active Directory: pwdLastSet; - for none")
	fs.DurationVar(&c.ConnectTimeout, "ldap-connect-timeout", directory.DefaultConnectTimeout, "time allowed to connect to the directory (TCP and TLS)")
	fs.DurationVar(&c.OperationTimeout, "ldap-timeout", directory.DefaultOperationTimeout, "time allowed each directory operation (bind, search)")
	fs.DurationVar(&l.syncInterval, "ldap-sync-interval", 5*time.Minute, "how often every directory user Tether knows is looked up again (0: never)")
}

// open returns the directory the flags configure, or nil when --ldap-url
// is not given. It does not reach the directory (see check).
func (l *ldapConfig) open() (*directory.Directory, error) {
	if l.urls == "" {
		return nil, nil
	}
	cfg := l.cfg
	for _, u := range strings.Split(l.urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if l.passwordFile != "" {
		data, err := os.ReadFile(l.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--ldap-bind-password-file: %w", err)
		}
		cfg.BindPassword = strings.TrimRight(string(data), "\r\n")
	}
	d, err := directory.New(cfg)
	if err != nil {
		return nil, ldapError(err)
	}
	return d, nil
}

// ldapError is a directory error with settings named as flags.
func ldapError(err error) error {
	var ce *directory.ConfigError
	if errors.As(err, &ce) {
		return errors.New(ce.Format(func(field string) string {
			if f, ok := ldapFlagOf[field]; ok {
				return f
			}
			return field
		}))
	}
	return err
}

// check reaches the directory at start. A configuration it refuses is an
// error; a directory that cannot be reached is not (directory users cannot
// sign in until it can; local users can), and is logged.
func (l *ldapConfig) check(ctx context.Context, d *directory.Directory, warn func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout+2*l.cfg.OperationTimeout)
	defer cancel()
	err := d.Check(ctx)
	if errors.Is(err, auth.ErrDirectoryUnavailable) {
		warn(ldapError(err).Error())
		return nil
	}
	return ldapError(err)
}

// ldapTest is "tether ldap test": what a sign-in of a name would see.
func (c *cli) ldapTest(ctx context.Context, args []string) error {
	var l ldapConfig
	var username string
	var passwordStdin, noPassword bool
	fs := c.flagSet("ldap test")
	ldapFlags(fs, &l)
	fs.StringVar(&username, "username", "", "the name to look up, as a person signs in with it")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the person's password from standard input (else it is prompted for)")
	fs.BoolVar(&noPassword, "no-password", false, "only look the person up; try no bind")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if username == "" || l.urls == "" {
		fmt.Fprintln(c.stderr, "tether ldap test: --username and the directory's flags (--ldap-url, ...) are required")
		return errUsage
	}
	d, err := l.open()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := l.check(ctx, d, func(msg string) { fmt.Fprintln(c.stderr, msg) }); err != nil {
		return err
	}
	out := c.stdout
	du, err := d.Lookup(ctx, username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		fmt.Fprintf(out, "%s: not found under %s with %s (or found more than once)\n", username, l.cfg.UserBase, l.cfg.UserFilter)
		return errors.New("not found")
	case err != nil:
		return ldapError(err)
	}
	fmt.Fprintf(out, "DN:        %s\nusername:  %s\nname:      %s %s (%s)\nemail:     %s\n", du.DN, du.Username, du.FirstName, du.LastName, du.DisplayName, du.Email)
	fmt.Fprintf(out, "groups:    %s\n", strings.Join(du.Groups, "; "))
	role := string(du.Role)
	if role == "" {
		role = "none: in none of the role groups, may not sign in"
	}
	fmt.Fprintf(out, "role:      %s\ndisabled:  %v\n", role, du.Disabled)
	if noPassword {
		return nil
	}
	password, err := c.existingPassword(passwordStdin)
	if err != nil {
		return err
	}
	if _, err := d.Authenticate(ctx, username, password); err != nil {
		fmt.Fprintf(out, "sign-in:   refused: %v\n", err)
		return errors.New("the sign-in would be refused")
	}
	fmt.Fprintln(out, "sign-in:   the bind succeeded: this person can sign in to Tether")
	return nil
}

// existingPassword reads a password a person already has: the first line
// of stdin, or once from a terminal prompt.
func (c *cli) existingPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, auth.MaxPasswordLen+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	if !c.isTerminal() {
		return "", errors.New("no terminal to prompt for the password: pass --password-stdin, or --no-password to only look the person up")
	}
	fmt.Fprint(c.stderr, "Password: ")
	pw, err := c.readPassword()
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(pw), nil
}
