package directory

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"tether/storage"
)

// The defaults New fills in for settings left empty or zero.
const (
	DefaultUserFilter              = "(uid={username})"
	DefaultGroupFilter             = "(member={dn})"
	DefaultUsernameAttribute       = "uid"
	DefaultDisplayNameAttribute    = "displayName"
	DefaultFirstNameAttribute      = "givenName"
	DefaultLastNameAttribute       = "sn"
	DefaultEmailAttribute          = "mail"
	DefaultEmployeeNumberAttribute = "employeeNumber"
	// DefaultPasswordChangedAttribute is OpenLDAP's (with the ppolicy
	// overlay); Active Directory's is pwdLastSet.
	DefaultPasswordChangedAttribute = "pwdChangedTime"
	DefaultConnectTimeout           = 5 * time.Second
	DefaultOperationTimeout         = 10 * time.Second
	DefaultMaxIdleConns             = 4
)

// Config is how to reach the directory and read people from it. The zero
// value of each optional field means its default above.
type Config struct {
	// URLs are the directory servers, ldap:// or ldaps:// with an optional
	// port, tried in order: each connection goes to the first that
	// answers.
	URLs []string
	// StartTLS upgrades each ldap:// connection to TLS before anything
	// else is sent; ldaps:// URLs are TLS from the start.
	StartTLS bool
	// CAFile is a PEM file of the CA certificates the servers' certificates
	// must chain to; empty means the system's roots.
	CAFile string
	// BindDN and BindPassword are the service account that searches the
	// directory (the password itself, not a file). With both empty the
	// searches are anonymous; a DN without a password is refused, since a
	// server takes that for an anonymous bind.
	BindDN       string
	BindPassword string

	// UserBase is where people are searched for, the whole subtree.
	UserBase string
	// UserFilter finds a person by the name they sign in with, which
	// replaces {username}, escaped as RFC 4515 says. Default
	// (uid={username}); for Active Directory (sAMAccountName={username}).
	UserFilter string
	// UsernameAttribute holds the name a person signs in with, returned as
	// DirectoryUser.Username and given back to Lookup by the sync. Default:
	// the attribute that UserFilter compares with {username} (the first,
	// if several), else uid.
	UsernameAttribute string

	// GroupBase is where groups are searched for, the whole subtree, with
	// GroupFilter. Empty: a person's groups are the values of their
	// memberOf attribute instead (Active Directory, or OpenLDAP's memberof
	// overlay), with no group search.
	GroupBase string
	// GroupFilter finds the groups a person is a direct member of: {dn} is
	// replaced by their DN and {username} by their username, both escaped.
	// Default (member={dn}); for posixGroup (memberUid={username}). Nested
	// groups are not followed.
	GroupFilter string
	// WorkerGroup, ManagerGroup and AdminGroup are group DNs: a person in
	// AdminGroup is an admin, else in ManagerGroup a manager, else in
	// WorkerGroup a worker. Where any is set, a person in none may not sign
	// in; where none is set, every person found is a worker.
	WorkerGroup  string
	ManagerGroup string
	AdminGroup   string

	// DisabledFilter matches the people who may not sign in, such as
	// (userAccountControl:1.2.840.113556.1.4.803:=2) in Active Directory.
	// Empty: nobody is disabled by the directory.
	DisabledFilter string

	// The attributes a person's details are read from.
	DisplayNameAttribute    string
	FirstNameAttribute      string
	LastNameAttribute       string
	EmailAttribute          string
	EmployeeNumberAttribute string
	// PasswordChangedAttribute holds when the person's password last
	// changed: a generalized time (OpenLDAP's pwdChangedTime) or a Windows
	// file time (Active Directory's pwdLastSet). Tether ends every session
	// of a person whose password changed. "-" reads none.
	PasswordChangedAttribute string

	// ConnectTimeout bounds a connection's setup: TCP, then TLS (ldaps or
	// StartTLS). OperationTimeout bounds each LDAP operation after it
	// (bind, search). A context's deadline shortens either.
	ConnectTimeout   time.Duration
	OperationTimeout time.Duration

	// MaxIdleConns is how many service-account connections are kept open
	// between operations; a negative number keeps none (a connection per
	// operation). Binds as a person always use a connection of their own.
	MaxIdleConns int
}

// ConfigError is a setting that is wrong, or a directory that refuses the
// configuration: New returns it for a setting that cannot work anywhere,
// Check for one this directory does not accept.
type ConfigError struct {
	// Settings are the names of the Config fields at fault, such as
	// "BindDN" and "BindPassword".
	Settings []string
	// Problem says what is wrong, in one line.
	Problem string
	err     error
}

func (e *ConfigError) Error() string { return e.Format(nil) }

// Format is the error's line with each setting called what name returns
// for it (a flag's name, say); a nil name keeps the field names.
func (e *ConfigError) Format(name func(setting string) string) string {
	names := e.Settings
	if name != nil {
		names = make([]string, len(e.Settings))
		for i, s := range e.Settings {
			names[i] = name(s)
		}
	}
	return strings.Join(names, ", ") + ": " + e.Problem
}

// Unwrap returns auth.ErrDirectoryUnavailable where Check reached no
// server at all, which may be an outage rather than a mistake.
func (e *ConfigError) Unwrap() error { return e.err }

func configErr(problem string, settings ...string) *ConfigError {
	return &ConfigError{Settings: settings, Problem: problem}
}

// settings is a Config checked and completed, with what New derives from
// it.
type settings struct {
	Config
	urls       []*url.URL
	tls        *tls.Config
	attrs      []string // read from a person's entry
	memberOf   bool     // groups from the memberOf attribute, not a search
	roleGroups []roleGroup
}

type roleGroup struct {
	setting string
	role    storage.Role
	raw     string // as configured
	dn      *ldap.DN
}

// filterAttr finds the attribute an equality filter compares with
// {username}.
var filterAttr = regexp.MustCompile(`\(\s*([A-Za-z][A-Za-z0-9-]*(?:;[A-Za-z0-9-]+)*)\s*=\{username\}\s*\)`)

// check completes cfg with the defaults and refuses what cannot work.
func check(cfg Config) (*settings, error) {
	s := &settings{Config: cfg}
	c := &s.Config
	if err := s.parseURLs(); err != nil {
		return nil, err
	}
	if err := s.loadTLS(); err != nil {
		return nil, err
	}

	switch {
	case c.BindDN != "" && c.BindPassword == "":
		return nil, configErr("empty, with a bind DN set: a directory takes a DN without a password for an anonymous bind", "BindPassword")
	case c.BindDN == "" && c.BindPassword != "":
		return nil, configErr("empty, with a bind password set", "BindDN")
	}
	if c.BindDN != "" {
		if err := checkDN(c.BindDN, "BindDN"); err != nil {
			return nil, err
		}
	}
	if c.UserBase == "" {
		return nil, configErr("empty: where should people be searched for?", "UserBase")
	}
	if err := checkDN(c.UserBase, "UserBase"); err != nil {
		return nil, err
	}

	var err error
	if c.UserFilter, err = checkFilter(orDefault(c.UserFilter, DefaultUserFilter), "UserFilter", "{username}"); err != nil {
		return nil, err
	}
	if c.UsernameAttribute == "" {
		c.UsernameAttribute = DefaultUsernameAttribute
		if m := filterAttr.FindStringSubmatch(c.UserFilter); m != nil {
			c.UsernameAttribute = m[1]
		}
	}
	if c.GroupBase != "" {
		if err := checkDN(c.GroupBase, "GroupBase"); err != nil {
			return nil, err
		}
		if c.GroupFilter, err = checkFilter(orDefault(c.GroupFilter, DefaultGroupFilter), "GroupFilter", "{dn}", "{username}"); err != nil {
			return nil, err
		}
	} else {
		if c.GroupFilter != "" {
			return nil, configErr("empty, with a group filter set: set where to search for groups, or leave the filter out to read groups from memberOf", "GroupBase")
		}
		s.memberOf = true
	}
	for _, g := range []struct {
		setting string
		role    storage.Role
		dn      string
	}{
		{"AdminGroup", storage.RoleAdmin, c.AdminGroup},
		{"ManagerGroup", storage.RoleManager, c.ManagerGroup},
		{"WorkerGroup", storage.RoleWorker, c.WorkerGroup},
	} {
		if g.dn == "" {
			continue
		}
		dn, err := ldap.ParseDN(g.dn)
		if err != nil {
			return nil, configErr(fmt.Sprintf("%q is not a DN: %v", g.dn, err), g.setting)
		}
		s.roleGroups = append(s.roleGroups, roleGroup{g.setting, g.role, g.dn, dn})
	}
	if c.DisabledFilter != "" {
		if c.DisabledFilter, err = checkFilter(c.DisabledFilter, "DisabledFilter"); err != nil {
			return nil, err
		}
	}

	c.DisplayNameAttribute = orDefault(c.DisplayNameAttribute, DefaultDisplayNameAttribute)
	c.FirstNameAttribute = orDefault(c.FirstNameAttribute, DefaultFirstNameAttribute)
	c.LastNameAttribute = orDefault(c.LastNameAttribute, DefaultLastNameAttribute)
	c.EmailAttribute = orDefault(c.EmailAttribute, DefaultEmailAttribute)
	c.EmployeeNumberAttribute = orDefault(c.EmployeeNumberAttribute, DefaultEmployeeNumberAttribute)
	c.PasswordChangedAttribute = orDefault(c.PasswordChangedAttribute, DefaultPasswordChangedAttribute)
	read := []struct{ setting, name string }{
		{"UsernameAttribute", c.UsernameAttribute},
		{"DisplayNameAttribute", c.DisplayNameAttribute},
		{"FirstNameAttribute", c.FirstNameAttribute},
		{"LastNameAttribute", c.LastNameAttribute},
		{"EmailAttribute", c.EmailAttribute},
		{"EmployeeNumberAttribute", c.EmployeeNumberAttribute},
	}
	if c.PasswordChangedAttribute != "-" {
		read = append(read, struct{ setting, name string }{"PasswordChangedAttribute", c.PasswordChangedAttribute})
	}
	for _, a := range read {
		if !attrName.MatchString(a.name) {
			return nil, configErr(fmt.Sprintf("%q is not an attribute name", a.name), a.setting)
		}
		s.attrs = appendNew(s.attrs, a.name)
	}
	if s.memberOf {
		s.attrs = appendNew(s.attrs, "memberOf")
	}

	for _, t := range []struct {
		setting string
		d       *time.Duration
		def     time.Duration
	}{
		{"ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout},
		{"OperationTimeout", &c.OperationTimeout, DefaultOperationTimeout},
	} {
		switch {
		case *t.d < 0:
			return nil, configErr(fmt.Sprintf("%v is negative", *t.d), t.setting)
		case *t.d == 0:
			*t.d = t.def
		}
	}
	switch {
	case c.MaxIdleConns == 0:
		c.MaxIdleConns = DefaultMaxIdleConns
	case c.MaxIdleConns < 0:
		c.MaxIdleConns = 0
	}
	return s, nil
}

var attrName = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*$`)

func (s *settings) parseURLs() error {
	if len(s.URLs) == 0 {
		return configErr("empty: no directory server to connect to", "URLs")
	}
	for _, raw := range s.URLs {
		u, err := url.Parse(strings.TrimSpace(raw))
		switch {
		case err != nil:
			return configErr(fmt.Sprintf("%q is not a URL: %v", raw, err), "URLs")
		case u.Scheme != "ldap" && u.Scheme != "ldaps":
			return configErr(fmt.Sprintf("%q: the scheme must be ldap:// or ldaps://", raw), "URLs")
		case u.Hostname() == "":
			return configErr(fmt.Sprintf("%q names no host", raw), "URLs")
		case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			return configErr(fmt.Sprintf("%q: give only the scheme, host and port (the DNs are settings of their own)", raw), "URLs")
		}
		s.urls = append(s.urls, u)
	}
	return nil
}

func (s *settings) loadTLS() error {
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile == "" {
		return nil // the system's roots
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return configErr(fmt.Sprintf("cannot read it: %v", err), "CAFile")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return configErr(fmt.Sprintf("%s holds no PEM certificate", s.CAFile), "CAFile")
	}
	s.tls.RootCAs = roots
	return nil
}

// tlsFor is the TLS configuration for a connection to u.
func (s *settings) tlsFor(u *url.URL) *tls.Config {
	c := s.tls.Clone()
	c.ServerName = u.Hostname()
	return c
}

func checkDN(dn, setting string) error {
	if _, err := ldap.ParseDN(dn); err != nil {
		return configErr(fmt.Sprintf("%q is not a DN: %v", dn, err), setting)
	}
	return nil
}

// checkFilter parenthesises filter if it is bare, and checks that it
// holds one of the placeholders (when some are given) and compiles.
func checkFilter(filter, setting string, placeholders ...string) (string, error) {
	filter = strings.TrimSpace(filter)
	if !strings.HasPrefix(filter, "(") {
		filter = "(" + filter + ")"
	}
	sample := filter
	found := len(placeholders) == 0
	for _, p := range placeholders {
		found = found || strings.Contains(filter, p)
		sample = strings.ReplaceAll(sample, p, "x")
	}
	if !found {
		return "", configErr(fmt.Sprintf("%q holds none of %s", filter, strings.Join(placeholders, ", ")), setting)
	}
	if _, err := ldap.CompileFilter(sample); err != nil {
		return "", configErr(fmt.Sprintf("%q is not an LDAP filter: %v", filter, err), setting)
	}
	return filter, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func appendNew(list []string, s string) []string {
	for _, have := range list {
		if strings.EqualFold(have, s) {
			return list
		}
	}
	return append(list, s)
}
