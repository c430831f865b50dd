package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
)

// certificate holds the server's TLS certificate and loads it again on
// demand (SIGHUP), so a renewed certificate takes effect without a restart.
// A reload that fails keeps the certificate in use.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	return c, c.reload()
}

func (c *certificate) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.current.Store(&cert)
	return nil
}

// config is the server's TLS configuration: TLS 1.2 and up, the Go
// defaults for cipher suites (forward-secret AEAD suites only), and the
// certificate read at each handshake.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
	}
}

// reloadOn reloads the certificate each time a signal arrives on sig.
func (c *certificate) reloadOn(sig <-chan os.Signal, log *slog.Logger) {
	for range sig {
		if err := c.reload(); err != nil {
			log.Error("TLS certificate reload failed; keeping the one in use", "error", err)
			continue
		}
		log.Info("TLS certificate reloaded", "cert", c.certFile)
	}
}

// parseProxies reads --trusted-proxies: addresses or networks, separated by
// commas.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not an address or network", part)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
