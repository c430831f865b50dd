package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"tether/auth"
)

// Check connects to each URL and, as the service account, reads the user
// base, the group base and each role group, and has the directory run each
// filter once: so that a server can refuse to start on a configuration the
// directory does not accept, rather than refuse every sign-in later.
//
// Its error is a *ConfigError, one line naming the settings at fault: the
// bind DN and password for a refused bind, the base for one not found,
// the CA file for a certificate it did not sign, the URLs for a
// certificate not for the host, or for no server answering. A certificate
// or StartTLS refusal on any URL fails Check; a server that does not
// answer fails it only when none does, and then the error also matches
// auth.ErrDirectoryUnavailable: an outage, perhaps, rather than a mistake.
func (d *Directory) Check(ctx context.Context) error {
	var good *conn
	var down []error
	for _, u := range d.s.urls {
		c, err := d.dialURL(ctx, u)
		if err == nil {
			err = d.probe(ctx, c)
			if err == nil && good == nil {
				good = c
				continue
			}
			c.close()
		}
		switch {
		case err == nil:
		case isResult(err):
			if good != nil {
				good.close()
			}
			return configErr(fmt.Sprintf("%s refused the bind as %s: %s", u.Redacted(), d.s.BindDN, describe(err)), "BindDN", "BindPassword")
		case tlsConfigError(u.Redacted(), err, d.s.CAFile) != nil:
			if good != nil {
				good.close()
			}
			return tlsConfigError(u.Redacted(), err, d.s.CAFile)
		default:
			down = append(down, &dialError{u.Redacted(), err})
		}
	}
	if good == nil {
		return &ConfigError{
			Settings: []string{"URLs"},
			Problem:  "no directory server answered: " + joinLine(down),
			err:      auth.ErrDirectoryUnavailable,
		}
	}
	c := good
	defer c.close()

	if err := d.checkEntry(ctx, c, d.s.UserBase, "UserBase"); err != nil {
		return err
	}
	if err := d.checkFilter(ctx, c, d.s.UserBase, ldap.ScopeWholeSubtree,
		strings.ReplaceAll(d.s.UserFilter, "{username}", "tether-configuration-check"), "UserFilter"); err != nil {
		return err
	}
	if d.s.DisabledFilter != "" {
		if err := d.checkFilter(ctx, c, d.s.UserBase, ldap.ScopeBaseObject, d.s.DisabledFilter, "DisabledFilter"); err != nil {
			return err
		}
	}
	if d.s.GroupBase != "" {
		if err := d.checkEntry(ctx, c, d.s.GroupBase, "GroupBase"); err != nil {
			return err
		}
		filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(d.s.UserBase), "{username}", "tether-configuration-check").Replace(d.s.GroupFilter)
		if err := d.checkFilter(ctx, c, d.s.GroupBase, ldap.ScopeWholeSubtree, filter, "GroupFilter"); err != nil {
			return err
		}
	}
	for _, rg := range d.s.roleGroups {
		if err := d.checkEntry(ctx, c, rg.raw, rg.setting); err != nil {
			return err
		}
	}
	return nil
}

// probe binds c as the service account, or for anonymous searches reads
// the root DSE: a server that accepts connections but does not answer
// fails it.
func (d *Directory) probe(ctx context.Context, c *conn) error {
	if d.s.BindDN != "" {
		return c.do(ctx, d.s.OperationTimeout, func() error { return c.l.Bind(d.s.BindDN, d.s.BindPassword) })
	}
	_, err := d.searchOne(ctx, c, "", ldap.ScopeBaseObject, "(objectClass=*)", 1, []string{"1.1"})
	if isResult(err) {
		return nil // an answer, whatever it is
	}
	return err
}

// checkEntry reads the entry dn, named by setting.
func (d *Directory) checkEntry(ctx context.Context, c *conn, dn, setting string) error {
	entries, err := d.searchOne(ctx, c, dn, ldap.ScopeBaseObject, "(objectClass=*)", 1, []string{"1.1"})
	switch code := resultCode(err); {
	case err == nil && len(entries) == 0, code == ldap.LDAPResultNoSuchObject:
		return configErr(fmt.Sprintf("%s: no such entry, or the service account may not see it", dn), setting)
	case code == ldap.LDAPResultInsufficientAccessRights:
		return configErr(fmt.Sprintf("%s: the service account may not read it: %s", dn, describe(err)), setting, "BindDN")
	case code == ldap.LDAPResultInvalidDNSyntax:
		return configErr(fmt.Sprintf("%s: the directory takes it for no DN: %s", dn, describe(err)), setting)
	case isResult(err):
		return configErr(fmt.Sprintf("%s: %s", dn, describe(err)), setting)
	case err != nil:
		return lost(c, err)
	}
	return nil
}

// checkFilter has the directory run filter once; what it finds does not
// matter, only that it takes the filter.
func (d *Directory) checkFilter(ctx context.Context, c *conn, base string, scope int, filter, setting string) error {
	_, err := d.searchOne(ctx, c, base, scope, filter, 1, []string{"1.1"})
	switch code := resultCode(err); {
	case err == nil, code == ldap.LDAPResultSizeLimitExceeded:
		return nil
	case isResult(err):
		return configErr(fmt.Sprintf("the directory refused %s: %s", filter, describe(err)), setting)
	default:
		return lost(c, err)
	}
}

// joinLine joins errs on one line.
func joinLine(errs []error) string {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = oneLine(err)
	}
	return strings.Join(msgs, "; ")
}

// lost is a server that stopped answering during Check.
func lost(c *conn, err error) error {
	return &ConfigError{
		Settings: []string{"URLs"},
		Problem:  fmt.Sprintf("%s stopped answering: %s", c.url.Redacted(), oneLine(err)),
		err:      auth.ErrDirectoryUnavailable,
	}
}

// tlsConfigError is the *ConfigError for a connection that failed for its
// TLS settings, or nil for one that failed otherwise.
func tlsConfigError(url string, err error, caFile string) error {
	var (
		noStartTLS *errNoStartTLS
		tlsErr     *tlsError
		unknown    x509.UnknownAuthorityError
		host       x509.HostnameError
		invalid    x509.CertificateInvalidError
	)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return nil // a server too slow to tell
	}
	roots := "the system's roots"
	if caFile != "" {
		roots = caFile
	}
	switch {
	case errors.As(err, &noStartTLS):
		return configErr(fmt.Sprintf("%s: %s; use an ldaps:// URL, or turn StartTLS off", url, oneLine(noStartTLS)), "StartTLS")
	case errors.As(err, &unknown):
		return configErr(fmt.Sprintf("%s: the server's certificate is not signed by a CA in %s: %s", url, roots, oneLine(unknown)), "CAFile")
	case errors.As(err, &host):
		return configErr(fmt.Sprintf("%s: the server's certificate is not for this host: %s", url, oneLine(host)), "URLs")
	case errors.As(err, &invalid):
		return configErr(fmt.Sprintf("%s: the server's certificate is not valid: %s", url, oneLine(invalid)), "URLs")
	case errors.As(err, &tlsErr):
		return configErr(fmt.Sprintf("%s: the TLS handshake failed (is it a TLS port?): %s", url, oneLine(tlsErr.err)), "URLs")
	}
	return nil
}
