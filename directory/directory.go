// Package directory signs people in against a company directory (OpenLDAP,
// Active Directory) over LDAP, and looks them up again for the sync. It
// finds a person with a service account, binds as them with the password
// they gave on a connection of its own, and reads their groups, which give
// their role. It implements auth.Directory: what a directory user may do,
// and what becomes of their sessions, is auth's business.
//
// The password is never logged, kept or cached: it goes into one bind
// request and nowhere else.
package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"tether/auth"
	"tether/storage"
)

var _ auth.Directory = (*Directory)(nil)

// Limits on what a client may send. A longer name is no one's; a password
// longer than any directory's limit is nobody's password.
const (
	maxUsername = 256
	maxPassword = 1024
)

// Directory is a company directory. It is safe for concurrent use; Close
// ends its idle connections.
type Directory struct {
	s      *settings
	dialer net.Dialer
	pool   pool
	down   downList
}

// New checks cfg and returns a Directory for it, or a *ConfigError naming
// the setting at fault. It does not connect: Check does.
func New(cfg Config) (*Directory, error) {
	s, err := check(cfg)
	if err != nil {
		return nil, err
	}
	d := &Directory{s: s}
	d.pool.max = s.MaxIdleConns
	return d, nil
}

// Close closes the idle connections. Operations under way finish; later
// ones open connections that are not kept.
func (d *Directory) Close() error {
	d.pool.closeAll()
	return nil
}

// Authenticate finds username with the service account, binds as the
// entry found with password on a connection of its own, and returns what
// the directory says of the person. An empty password, a name that is
// nobody's or several people's, a wrong password, a person in none of the
// role groups (where any is set) or matched by the disabled filter: all are
// auth.ErrInvalidCredentials, wrapped with the detail for the log. A
// directory that cannot be reached or does not answer in time is
// auth.ErrDirectoryUnavailable.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (auth.DirectoryUser, error) {
	switch {
	case password == "":
		// A simple bind with a DN and no password is an anonymous bind,
		// which a server answers with success: never send one.
		return auth.DirectoryUser{}, fmt.Errorf("directory: empty password: %w", auth.ErrInvalidCredentials)
	case len(password) > maxPassword:
		return auth.DirectoryUser{}, fmt.Errorf("directory: password over %d bytes: %w", maxPassword, auth.ErrInvalidCredentials)
	}
	if err := checkUsername(username); err != nil {
		return auth.DirectoryUser{}, fmt.Errorf("directory: %w: %w", err, auth.ErrInvalidCredentials)
	}
	u, err := d.find(ctx, username)
	if err != nil {
		return auth.DirectoryUser{}, d.wrap(username, err, auth.ErrInvalidCredentials)
	}
	// The bind comes before the role and disabled checks, so that a
	// person the directory would refuse costs what anyone else does.
	if err := d.bind(ctx, u.DN, password); err != nil {
		return auth.DirectoryUser{}, err
	}
	switch {
	case u.Disabled:
		return auth.DirectoryUser{}, fmt.Errorf("directory: %s is matched by the disabled filter: %w", u.DN, auth.ErrInvalidCredentials)
	case u.Role == "":
		return auth.DirectoryUser{}, fmt.Errorf("directory: %s is in none of the role groups: %w", u.DN, auth.ErrInvalidCredentials)
	}
	return u, nil
}

// Lookup finds username with the service account, as Authenticate does but
// without a bind, and returns what the directory says of the person, who
// may not be Allowed. A name that is nobody's, or several people's, is
// storage.ErrNotFound; a directory that cannot be reached, or a user base
// that has gone, is auth.ErrDirectoryUnavailable (never ErrNotFound, so
// that a sync does not take everyone for deleted).
func (d *Directory) Lookup(ctx context.Context, username string) (auth.DirectoryUser, error) {
	if err := checkUsername(username); err != nil {
		return auth.DirectoryUser{}, fmt.Errorf("directory: %w: %w", err, storage.ErrNotFound)
	}
	u, err := d.find(ctx, username)
	if err != nil {
		return auth.DirectoryUser{}, d.wrap(username, err, storage.ErrNotFound)
	}
	return u, nil
}

// checkUsername refuses a name no directory entry can have, before it
// goes into a filter.
func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("empty username")
	case len(name) > maxUsername:
		return fmt.Errorf("username over %d bytes", maxUsername)
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("username with a NUL byte")
	case !utf8.ValidString(name):
		return errors.New("username not UTF-8")
	}
	return nil
}

// Why find found nobody; both are a missing person to callers.
var (
	errNoEntry   = errors.New("no entry matches")
	errAmbiguous = errors.New("several entries match")
)

// wrap turns an error of find into the caller's: missing is the sentinel
// for a person not found, anything else is the directory unavailable.
func (d *Directory) wrap(username string, err error, missing error) error {
	if errors.Is(err, errNoEntry) || errors.Is(err, errAmbiguous) {
		return fmt.Errorf("directory: %q under %s: %v: %w", username, d.s.UserBase, err, missing)
	}
	return unavailable(err)
}

func unavailable(err error) error {
	return fmt.Errorf("directory: %s: %w", oneLine(err), auth.ErrDirectoryUnavailable)
}

// oneLine is err's text on one line; a joined error's parts are parted by
// semicolons.
func oneLine(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return joinLine(j.Unwrap())
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// find searches for username with the service account and reads the
// entry's groups and whether the disabled filter matches it.
func (d *Directory) find(ctx context.Context, username string) (auth.DirectoryUser, error) {
	var u auth.DirectoryUser
	err := d.service(ctx, func(c *conn) error {
		var err error
		u, err = d.read(ctx, c, username)
		return err
	})
	return u, err
}

func (d *Directory) read(ctx context.Context, c *conn, username string) (auth.DirectoryUser, error) {
	s := d.s
	filter := strings.ReplaceAll(s.UserFilter, "{username}", ldap.EscapeFilter(username))
	entries, err := d.searchOne(ctx, c, s.UserBase, ldap.ScopeWholeSubtree, filter, 2, s.attrs)
	switch {
	case resultCode(err) == ldap.LDAPResultSizeLimitExceeded || len(entries) > 1:
		return auth.DirectoryUser{}, errAmbiguous
	case err != nil:
		return auth.DirectoryUser{}, fmt.Errorf("search the user base %s: %w", s.UserBase, err)
	case len(entries) == 0:
		return auth.DirectoryUser{}, errNoEntry
	}
	e := entries[0]
	u := auth.DirectoryUser{
		DN:             e.DN,
		Username:       username,
		DisplayName:    e.GetEqualFoldAttributeValue(s.DisplayNameAttribute),
		FirstName:      e.GetEqualFoldAttributeValue(s.FirstNameAttribute),
		LastName:       e.GetEqualFoldAttributeValue(s.LastNameAttribute),
		Email:          e.GetEqualFoldAttributeValue(s.EmailAttribute),
		EmployeeNumber: e.GetEqualFoldAttributeValue(s.EmployeeNumberAttribute),
	}
	if s.PasswordChangedAttribute != "-" {
		u.PasswordChangedAt = passwordTime(e.GetEqualFoldAttributeValue(s.PasswordChangedAttribute))
	}
	// The directory's spelling of the name: the value that matched, where
	// the attribute has several.
	if names := e.GetEqualFoldAttributeValues(s.UsernameAttribute); len(names) > 0 {
		u.Username = names[0]
		for _, n := range names {
			if strings.EqualFold(n, username) {
				u.Username = n
				break
			}
		}
	}

	// The groups and the disabled check go together, each on its own
	// message of the connection: one round trip, not two.
	var groups, disabled []*ldap.Entry
	var groupsErr, disabledErr error
	err = c.do(ctx, s.OperationTimeout, func() error {
		var wg sync.WaitGroup
		if !s.memberOf {
			filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(e.DN), "{username}", ldap.EscapeFilter(u.Username)).Replace(s.GroupFilter)
			wg.Go(func() {
				groups, groupsErr = d.search(c, s.GroupBase, ldap.ScopeWholeSubtree, filter, 0, []string{"1.1"})
			})
		}
		if s.DisabledFilter != "" {
			disabled, disabledErr = d.search(c, e.DN, ldap.ScopeBaseObject, s.DisabledFilter, 1, []string{"1.1"})
		}
		wg.Wait()
		for _, err := range []error{groupsErr, disabledErr} {
			if err != nil && !isResult(err) {
				return err // the connection failed
			}
		}
		return nil
	})
	if err != nil {
		return auth.DirectoryUser{}, fmt.Errorf("read the groups of %s and check it against the disabled filter: %w", e.DN, err)
	}

	if s.memberOf {
		u.Groups = e.GetEqualFoldAttributeValues("memberOf")
	} else {
		// A size limit still gives the groups read before it.
		if groupsErr != nil && resultCode(groupsErr) != ldap.LDAPResultSizeLimitExceeded {
			return auth.DirectoryUser{}, fmt.Errorf("search the group base %s: %w", s.GroupBase, groupsErr)
		}
		for _, g := range groups {
			u.Groups = append(u.Groups, g.DN)
		}
	}
	u.Role = d.role(u.Groups)

	switch {
	case resultCode(disabledErr) == ldap.LDAPResultNoSuchObject:
		return auth.DirectoryUser{}, errNoEntry // deleted since the search
	case disabledErr != nil:
		return auth.DirectoryUser{}, fmt.Errorf("check %s against the disabled filter: %w", e.DN, disabledErr)
	}
	u.Disabled = len(disabled) > 0
	return u, nil
}

// role is the role groups give: admin over manager over worker; a worker
// where no role group is set.
func (d *Directory) role(groups []string) storage.Role {
	if len(d.s.roleGroups) == 0 {
		return storage.RoleWorker
	}
	for _, rg := range d.s.roleGroups { // admin, manager, worker
		for _, g := range groups {
			if sameDN(rg.dn, g) {
				return rg.role
			}
		}
	}
	return ""
}

func sameDN(want *ldap.DN, got string) bool {
	dn, err := ldap.ParseDN(got)
	if err != nil {
		return strings.EqualFold(want.String(), got)
	}
	return want.EqualFold(dn)
}

// search runs one search on c, which the caller runs under c.do.
func (d *Directory) search(c *conn, base string, scope int, filter string, limit int, attrs []string) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, limit,
		int(d.s.OperationTimeout.Seconds()), false, filter, attrs, nil)
	res, err := c.l.Search(req)
	if res == nil {
		return nil, err
	}
	return res.Entries, err
}

// searchOne runs one search on c under the operation timeout and ctx.
func (d *Directory) searchOne(ctx context.Context, c *conn, base string, scope int, filter string, limit int, attrs []string) ([]*ldap.Entry, error) {
	var entries []*ldap.Entry
	err := c.do(ctx, d.s.OperationTimeout, func() error {
		var err error
		entries, err = d.search(c, base, scope, filter, limit, attrs)
		return err
	})
	return entries, err
}

// bind checks password by binding as dn on a connection of its own,
// closed after: a connection bound as a person never serves anyone else.
func (d *Directory) bind(ctx context.Context, dn, password string) error {
	c, err := d.dial(ctx, func(c *conn) error {
		return c.do(ctx, d.s.OperationTimeout, func() error { return c.l.Bind(dn, password) })
	})
	if err == nil {
		c.close()
		return nil
	}
	switch resultCode(err) {
	case ldap.LDAPResultInvalidCredentials, // a wrong password; in AD also locked, expired, disabled
		ldap.LDAPResultInappropriateAuthentication,
		ldap.LDAPResultInsufficientAccessRights,
		ldap.LDAPResultUnwillingToPerform,
		ldap.LDAPResultConstraintViolation, // password policy: locked
		ldap.LDAPResultNoSuchObject,        // deleted since the search
		ldap.LDAPResultInvalidDNSyntax:
		return fmt.Errorf("directory: bind as %s: %s: %w", dn, describe(err), auth.ErrInvalidCredentials)
	case -1:
		return unavailable(fmt.Errorf("bind as %s: %w", dn, err))
	default:
		return unavailable(fmt.Errorf("bind as %s: %s", dn, describe(err)))
	}
}

// passwordTime reads when a password changed: a generalized time
// (20261203141500Z, with optional fractions) or a Windows file time (100 ns
// units since 1601, as pwdLastSet holds). Anything else, and 0 (Active
// Directory's "must change at next sign-in"), is the zero time.
func passwordTime(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && len(v) > 14 {
		if n <= 0 {
			return time.Time{}
		}
		const fileTimeToUnix = 116444736000000000 // 1601 to 1970, in 100 ns
		return time.Unix(0, (n-fileTimeToUnix)*100).UTC()
	}
	for _, layout := range []string{"20060102150405Z0700", "20060102150405.999999999Z0700", "20060102150405Z", "20060102150405.999999999Z"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
