package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// conn is one LDAP connection, used by one goroutine at a time. Each
// operation runs under a deadline on the TCP connection, so neither a
// silent server nor a lost packet can hold a caller past its timeout.
type conn struct {
	l        *ldap.Conn
	tcp      net.Conn
	url      *url.URL
	lastUsed time.Time
	broken   bool // a deadline or cancellation cut an operation short
}

// longAgo is a deadline in the past: setting it ends the operation under
// way at once.
var longAgo = time.Unix(1, 0)

// dialError is a failure to connect to one URL.
type dialError struct {
	url string
	err error
}

func (e *dialError) Error() string { return e.url + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial connects to the first of the URLs that answers and runs setup on
// the connection (a bind, say). A URL whose server does not answer, at
// connection or during setup, gives way to the next, and for a while after
// is tried only once the others have failed; a server's refusal of setup
// gives way to none, since its replicas would refuse too. The error for
// servers that did not answer joins one *dialError per URL.
func (d *Directory) dial(ctx context.Context, setup func(c *conn) error) (*conn, error) {
	var errs []error
	for _, i := range d.down.order(len(d.s.urls)) {
		u := d.s.urls[i]
		c, err := d.dialURL(ctx, u)
		if err == nil && setup != nil {
			if err = setup(c); err != nil {
				c.close()
				if isResult(err) {
					d.down.clear(i)
					return nil, err
				}
			}
		}
		if err == nil {
			d.down.clear(i)
			return c, nil
		}
		errs = append(errs, &dialError{u.Redacted(), err})
		if ctx.Err() != nil {
			break // the caller gave up: no fault of the server's
		}
		d.down.mark(i)
	}
	return nil, errors.Join(errs...)
}

// downFor is how long a URL that did not answer goes to the back of the
// line: a server that takes connections and answers nothing would
// otherwise cost each connection an operation timeout.
const downFor = 30 * time.Second

// downList remembers which URLs did not answer lately.
type downList struct {
	mu    sync.Mutex
	until map[int]time.Time
}

// order is the indexes of the URLs in the order to try them: those that
// answered lately first, then the others, each in the configured order.
func (l *downList) order(n int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	up := make([]int, 0, n)
	var down []int
	for i := range n {
		if t, ok := l.until[i]; ok && now.Before(t) {
			down = append(down, i)
		} else {
			up = append(up, i)
		}
	}
	return append(up, down...)
}

func (l *downList) mark(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until == nil {
		l.until = make(map[int]time.Time)
	}
	l.until[i] = time.Now().Add(downFor)
}

func (l *downList) clear(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.until, i)
}

// dialURL opens a connection to u within the connect timeout: TCP, then
// TLS for ldaps://, or the StartTLS operation then TLS for ldap:// when
// StartTLS is set.
func (d *Directory) dialURL(ctx context.Context, u *url.URL) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.s.ConnectTimeout)
	defer cancel()
	port := u.Port()
	if port == "" {
		port = "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
	}
	tcp, err := d.dialer.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	if err := tcp.SetDeadline(deadline); err != nil {
		tcp.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(longAgo) })
	defer stop()

	fail := func(err error) (*conn, error) {
		tcp.Close()
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no answer in time (connect timeout %v): %w", d.s.ConnectTimeout, err)
		}
		return nil, err
	}
	var nc net.Conn = tcp
	useTLS := u.Scheme == "ldaps"
	if u.Scheme == "ldap" && d.s.StartTLS {
		if err := startTLS(tcp); err != nil {
			return fail(err)
		}
		useTLS = true
	}
	if useTLS {
		tc := tls.Client(tcp, d.s.tlsFor(u))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(&tlsError{err})
		}
		nc = tc
	}
	if !stop() {
		tcp.Close()
		return nil, context.Cause(ctx)
	}
	if err := tcp.SetDeadline(time.Time{}); err != nil {
		tcp.Close()
		return nil, err
	}
	l := ldap.NewConn(nc, useTLS)
	l.Start()
	return &conn{l: l, tcp: tcp, url: u, lastUsed: time.Now()}, nil
}

// tlsError is a failed TLS handshake: often a certificate not signed by
// the CA file, or not for the URL's host.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// errNoStartTLS is a server that refused the StartTLS operation. It does
// not unwrap to the server's result: that is no refusal of a bind.
type errNoStartTLS struct{ err error }

func (e *errNoStartTLS) Error() string { return "the server refused StartTLS: " + describe(e.err) }

// startTLS sends the StartTLS extended operation (RFC 4511 4.14) on a
// connection nothing else has used, and reads its answer, before go-ldap
// takes the connection over: done here rather than by go-ldap so that a
// certificate error keeps its type.
func startTLS(tcp net.Conn) error {
	const startTLSOID = "1.3.6.1.4.1.1466.20037"
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(1), "MessageID"))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, startTLSOID, "TLS Extended Command"))
	p.AppendChild(req)
	if _, err := tcp.Write(p.Bytes()); err != nil {
		return err
	}
	resp, err := ber.ReadPacket(tcp) // reads exactly one message: TLS follows
	if err != nil {
		return err
	}
	if len(resp.Children) < 2 {
		return errors.New("StartTLS: malformed response")
	}
	if id, ok := resp.Children[0].Value.(int64); !ok || id != 1 {
		// Message 0 is a notice of disconnection.
		return &errNoStartTLS{ldap.GetLDAPError(resp)}
	}
	if resp.Children[1].Tag != ldap.ApplicationExtendedResponse {
		return errors.New("StartTLS: unexpected response")
	}
	if err := ldap.GetLDAPError(resp); err != nil {
		return &errNoStartTLS{err}
	}
	return nil
}

// do runs op, one LDAP operation, under the operation timeout and ctx. A
// connection whose operation was cut short is broken: its answer may
// still come, so it is closed, never reused.
func (c *conn) do(ctx context.Context, timeout time.Duration, op func() error) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.tcp.SetDeadline(deadline); err != nil {
		c.broken = true
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.tcp.SetDeadline(longAgo) })
	err := op()
	if !stop() {
		c.broken = true
		if err == nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	c.lastUsed = time.Now()
	if err != nil && !isResult(err) {
		c.broken = true
		if time.Now().After(deadline) {
			err = fmt.Errorf("no answer in time (operation timeout %v): %w", timeout, err)
		}
		return err
	}
	if err := c.tcp.SetDeadline(time.Time{}); err != nil {
		c.broken = true
	}
	return err
}

// usable tells whether c may serve another operation.
func (c *conn) usable() bool {
	return !c.broken && !c.l.IsClosing() && time.Since(c.lastUsed) < maxIdle
}

// maxIdle is how long a connection waits in the pool: long enough to serve
// a burst of logins or a sync, short enough that a firewall dropping idle
// connections without a word rarely costs an operation timeout.
const maxIdle = time.Minute

// close ends c, politely when it is still sound.
func (c *conn) close() {
	if c.usable() {
		_ = c.tcp.SetDeadline(time.Now().Add(time.Second))
		if c.l.Unbind() == nil { // Unbind closes
			return
		}
	}
	c.l.Close()
}

// isResult tells whether err is an answer from the server (a result code),
// after which the connection is still sound, rather than a failure of the
// connection itself.
func isResult(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork
}

// resultCode is err's LDAP result code, or -1 for a failure of the
// connection.
func resultCode(err error) int {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		return int(le.ResultCode)
	}
	return -1
}

// describe renders err on one line: go-ldap's text for a result code ends
// with the server's diagnostic, which may be empty or span lines.
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	var le *ldap.Error
	var msg string
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		msg = fmt.Sprintf("%s (LDAP result %d)", ldap.LDAPResultCodeMap[le.ResultCode], le.ResultCode)
		if diag := strings.TrimSpace(le.Err.Error()); diag != "" {
			msg += ": " + diag
		}
	} else {
		msg = err.Error()
	}
	return strings.Join(strings.Fields(msg), " ")
}

// pool keeps a few service-account connections open between operations.
// A connection is taken by one operation at a time, never shared, and a
// user's bind never uses one.
type pool struct {
	mu   sync.Mutex
	idle []*conn
	max  int
}

func (p *pool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.usable() {
			return c
		}
		go c.close()
	}
	return nil
}

func (p *pool) put(c *conn) {
	if !c.usable() {
		c.close()
		return
	}
	p.mu.Lock()
	if len(p.idle) < p.max {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.close()
	}
}

func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.max = nil, 0
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// errServiceBind is the directory refusing the service account.
type errServiceBind struct{ err error }

func (e *errServiceBind) Error() string {
	return "the directory refused the service account's bind: " + describe(e.err)
}
func (e *errServiceBind) Unwrap() error { return e.err }

// service runs fn on a connection bound as the service account: one from
// the pool, or a new one. Should a pooled connection turn out to be dead
// (the server restarted, or dropped it) fn runs once more on a new one;
// fn must only read.
func (d *Directory) service(ctx context.Context, fn func(c *conn) error) error {
	for attempt := 0; ; attempt++ {
		c := d.pool.get()
		pooled := c != nil
		if !pooled {
			var err error
			if c, err = d.dialService(ctx); err != nil {
				return err
			}
		}
		err := fn(c)
		if err == nil || !c.broken {
			d.pool.put(c)
			return err
		}
		c.close()
		if !pooled || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// dialService opens a connection bound as the service account.
func (d *Directory) dialService(ctx context.Context) (*conn, error) {
	if d.s.BindDN == "" {
		return d.dial(ctx, nil)
	}
	c, err := d.dial(ctx, func(c *conn) error {
		return c.do(ctx, d.s.OperationTimeout, func() error { return c.l.Bind(d.s.BindDN, d.s.BindPassword) })
	})
	if isResult(err) {
		return nil, &errServiceBind{err}
	}
	return c, err
}
