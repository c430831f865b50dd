package events

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// syslogSender writes RFC 5424 messages over TCP, or TLS (RFC 5425), with
// octet-counting framing: "LEN SP MESSAGE". Each message's MSG is the
// CloudEvent, JSON after a UTF-8 byte order mark.
//
// Plain syslog has no acknowledgement: an event counts as delivered once
// the kernel took it, and one the receiver lost as it crashed is not sent
// again. Webhooks acknowledge each event.
type syslogSender struct {
	addr     string
	tls      *tls.Config
	facility int
	hostname string
	procID   string
	timeout  time.Duration
	conn     net.Conn
}

func newSyslog(s Sink) (*syslogSender, error) {
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		return nil, fmt.Errorf("sink %q: address: %w", s.Name, err)
	}
	x := &syslogSender{
		addr: s.Address, facility: facilities[s.Facility], timeout: time.Duration(s.Timeout),
		hostname: "-", procID: strconv.Itoa(os.Getpid()),
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		x.hostname = printable(h, 255)
	}
	if s.TLS {
		name := s.ServerName
		if name == "" {
			name = host
		}
		if x.tls, err = tlsConfig(s.CAFile, name); err != nil {
			return nil, fmt.Errorf("sink %q: %w", s.Name, err)
		}
	}
	return x, nil
}

func (x *syslogSender) Target() string {
	if x.tls != nil {
		return "syslog+tls://" + x.addr
	}
	return "syslog://" + x.addr
}

func (x *syslogSender) Close() error {
	if x.conn == nil {
		return nil
	}
	err := x.conn.Close()
	x.conn = nil
	return err
}

// Severities: a success is informational, a failure a warning.
const (
	sevWarning = 4
	sevInfo    = 6
)

// Format returns ce as an RFC 5424 message.
func (x *syslogSender) Format(ce CloudEvent) ([]byte, error) {
	body, err := ce.encode()
	if err != nil {
		return nil, err
	}
	sev := sevInfo
	if ce.Data.Outcome == "failure" {
		sev = sevWarning
	}
	var b bytes.Buffer
	// RFC 5424 allows six digits of fractional seconds.
	fmt.Fprintf(&b, "<%d>1 %s %s tether %s %s - \ufeff", x.facility*8+sev,
		ce.Data.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), x.hostname, x.procID, printable(ce.Data.Action, 32))
	b.Write(body)
	return b.Bytes(), nil
}

// printable keeps s to at most n characters of printable US-ASCII (33 to
// 126), as RFC 5424 wants its header fields; "-" if none is left.
func printable(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// Send writes the events in one go, each framed, on the connection it
// keeps (dialling a new one when there is none, or the last one failed).
func (x *syslogSender) Send(ctx context.Context, events []CloudEvent) (int, error) {
	if x.conn == nil {
		d := net.Dialer{Timeout: x.timeout}
		var conn net.Conn
		var err error
		if x.tls != nil {
			td := tls.Dialer{NetDialer: &d, Config: x.tls}
			conn, err = td.DialContext(ctx, "tcp", x.addr)
		} else {
			conn, err = d.DialContext(ctx, "tcp", x.addr)
		}
		if err != nil {
			return 0, fmt.Errorf("syslog: %w", err)
		}
		x.conn = conn
	}
	var frames bytes.Buffer
	for i, ce := range events {
		msg, err := x.Format(ce)
		if err != nil {
			if i == 0 {
				return 0, &PermanentError{err}
			}
			events = events[:i]
			break
		}
		frames.WriteString(strconv.Itoa(len(msg)))
		frames.WriteByte(' ')
		frames.Write(msg)
	}
	if err := x.conn.SetWriteDeadline(time.Now().Add(x.timeout)); err != nil {
		x.Close()
		return 0, fmt.Errorf("syslog: %w", err)
	}
	if _, err := x.conn.Write(frames.Bytes()); err != nil {
		// Some of it may have gone: it goes again, and receivers
		// deduplicate by the event's id.
		x.Close()
		return 0, fmt.Errorf("syslog: %w", err)
	}
	return len(events), nil
}
