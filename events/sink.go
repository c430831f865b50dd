package events

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// A Sender delivers events to one receiver.
type Sender interface {
	// Send delivers events in order, and returns how many of them (the
	// first n) the receiver took; if not all, the error says why the next
	// was not. A *PermanentError means that event will never be taken.
	Send(ctx context.Context, events []CloudEvent) (n int, err error)
	// Target describes the receiver for the console and the logs, without
	// secrets.
	Target() string
	Close() error
}

// PermanentError is a receiver's refusal that retrying will not change,
// such as a webhook's 400: the event becomes a dead letter at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// NewSender makes the sender a sink's configuration describes. source is
// the CloudEvents source of the events it will send.
func NewSender(s Sink) (Sender, error) {
	switch s.Type {
	case TypeWebhook:
		return newWebhook(s)
	case TypeSyslog:
		return newSyslog(s)
	case TypeFile:
		return newFile(s)
	}
	return nil, fmt.Errorf("sink %q: type %q", s.Name, s.Type)
}

// tlsConfig is the client TLS configuration of a sink: TLS 1.2 at least,
// the receiver's certificate checked against caFile's certificates or,
// without one, the system's.
func tlsConfig(caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("caFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("caFile: no PEM certificate in it")
	}
	c.RootCAs = pool
	return c, nil
}

// sendTest sends one event and reports the answer: a webhook's status and
// body, or where a syslog or file sink put it.
func sendTest(ctx context.Context, sender Sender, ce CloudEvent) (string, error) {
	if t, ok := sender.(interface {
		test(context.Context, CloudEvent) (string, error)
	}); ok {
		return t.test(ctx, ce)
	}
	if _, err := sender.Send(ctx, []CloudEvent{ce}); err != nil {
		return "", err
	}
	return "written to " + sender.Target(), nil
}
