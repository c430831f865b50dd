package events_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether/events"
	"tether/storage"
)

// rsyslog is a real rsyslogd listening on a loopback port, writing what it
// receives to a file: one line a message, its fields separated by tabs.
type rsyslog struct {
	addr string
	out  string
}

// startRsyslog starts rsyslogd (Debian's rsyslog package) on a free
// loopback port, over TLS when tlsDir holds ca.pem, cert.pem and key.pem.
func startRsyslog(t *testing.T, tlsDir string) rsyslog {
	t.Helper()
	exe := "/usr/sbin/rsyslogd"
	if _, err := os.Stat(exe); err != nil {
		skipOrFail(t, "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	out := filepath.Join(dir, "out.log")
	var conf strings.Builder
	fmt.Fprintf(&conf, "global(workDirectory=%q)\n", dir)
	if tlsDir != "" {
		fmt.Fprintf(&conf, "global(DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q)\n",
			filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"))
		conf.WriteString(`module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")` + "\n")
	} else {
		conf.WriteString(`module(load="imtcp")` + "\n")
	}
	fmt.Fprintf(&conf, "input(type=\"imtcp\" port=\"%d\" address=\"127.0.0.1\")\n", port)
	conf.WriteString(`template(name="fields" type="string" string="%pri%\t%timereported:::date-rfc3339%\t%hostname%\t%app-name%\t%procid%\t%msgid%\t%structured-data%\t%msg%\n")` + "\n")
	fmt.Fprintf(&conf, "*.* action(type=\"omfile\" file=%q template=\"fields\")\n", out)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslog.pid"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not listen on %s: %s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rsyslog{addr: addr, out: out}
}

// lines returns the messages from tether that rsyslog wrote (not its own
// notes), each line's fields.
func (r rsyslog) lines() [][]string {
	data, _ := os.ReadFile(r.out)
	var out [][]string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		if f := strings.Split(line, "\t"); len(f) > 3 && f[3] == "tether" {
			out = append(out, f)
		}
	}
	return out
}

// writeCerts writes a CA and a certificate for 127.0.0.1 it signed.
func writeCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "cert.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSyslogToRsyslog: events reach a real rsyslog over TCP and over TLS,
// as RFC 5424 messages it parses: priority by outcome (authpriv), the
// action as MSGID, the CloudEvent as MSG. Over TLS, a receiver whose
// certificate the CA file does not vouch for gets nothing.
func TestSyslogToRsyslog(t *testing.T) {
	certs := writeCerts(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"tcp", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ""
			if tc.tls {
				dir = certs
			}
			rs := startRsyslog(t, dir)
			s := openStore(t)
			sink := events.Sink{Name: "siem", Type: events.TypeSyslog, Address: rs.addr, TLS: tc.tls}
			if tc.tls {
				sink.CAFile = filepath.Join(certs, "ca.pem")
			}
			d, err := events.New(context.Background(), s, events.Config{Sinks: []events.Sink{sink}}, fast(events.Options{}))
			if err != nil {
				t.Fatal(err)
			}
			start(t, d)
			login := newEvent("login", "ses_1")
			refused := newEvent("login", "")
			refused.Outcome, refused.Reason = "failure", "invalid_credentials"
			refused.Detail = map[string]string{"tab": "a\tb", "line": "x\ny"}
			appendEvents(t, s, login, refused)
			waitFor(t, "two messages in rsyslog", func() bool { return len(rs.lines()) >= 2 })
			lines := rs.lines()
			if len(lines) != 2 {
				t.Fatalf("%d lines: %q", len(lines), lines)
			}
			for i, want := range []struct {
				pri string
				e   storage.Event
			}{{"86", login}, {"84", refused}} {
				f := lines[i]
				if len(f) != 8 {
					t.Fatalf("line %d: %q", i, f)
				}
				if f[0] != want.pri || f[3] != "tether" || f[5] != "login" || f[6] != "-" {
					t.Errorf("line %d: pri %s app %s msgid %s sd %s", i, f[0], f[3], f[5], f[6])
				}
				if at, err := time.Parse(time.RFC3339, f[1]); err != nil || at.Sub(want.e.Time).Abs() > time.Millisecond {
					t.Errorf("line %d: time %s, want %s", i, f[1], want.e.Time)
				}
				// rsyslog escapes control characters as #011 and so on;
				// the JSON holds none raw.
				msg := strings.TrimPrefix(f[7], "\ufeff")
				var ce events.CloudEvent
				if err := json.Unmarshal([]byte(msg), &ce); err != nil {
					t.Fatalf("line %d: MSG is no CloudEvent: %q", i, msg)
				}
				if ce.ID != want.e.ID || ce.Data.Outcome != want.e.Outcome {
					t.Errorf("line %d: %+v", i, ce)
				}
			}
			// Acknowledged once written: the queue empties.
			waitFor(t, "the queue to empty", func() bool {
				st, _ := d.Status(context.Background())
				return st[0].Pending == 0 && st[0].Delivered == 2
			})
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		rs := startRsyslog(t, certs)
		other := writeCerts(t) // another CA
		s := openStore(t)
		sink := events.Sink{Name: "siem", Type: events.TypeSyslog, Address: rs.addr, TLS: true, CAFile: filepath.Join(other, "ca.pem")}
		d, err := events.New(context.Background(), s, events.Config{Sinks: []events.Sink{sink}}, fast(events.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		start(t, d)
		appendEvents(t, s, newEvent("login", "ses_1"))
		waitFor(t, "a failed attempt", func() bool {
			st, _ := d.Status(context.Background())
			return st[0].Failed > 0
		})
		st, _ := d.Status(context.Background())
		if st[0].Pending != 1 || !strings.Contains(st[0].LastError, "certificate") {
			t.Errorf("status %+v", st[0])
		}
		if n := len(rs.lines()); n != 0 {
			t.Errorf("rsyslog got %d messages from a client that should not trust it", n)
		}
	})
}
