package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tether/api"
	"tether/auth"
	"tether/events"
	"tether/oauth"
	"tether/storage"
)

type serveConfig struct {
	auth            auth.Config
	addr            string
	store           storeConfig
	logLevel        string
	logFormat       string
	bodyLimit       int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	publicURL       string
	demo            bool
	tlsCert         string
	tlsKey          string
	trustedProxies  string
	sweepEvery      time.Duration
	shiftWatchEvery time.Duration
	masterKeyFile   string
	// attestationRoots is a PEM file replacing Google's attestation roots.
	attestationRoots string
	ldap             ldapConfig
	events           eventsConfig
}

func (c *cli) serve(ctx context.Context, args []string) error {
	var cfg serveConfig
	fs := c.flagSet("serve")
	fs.StringVar(&cfg.addr, "addr", ":8080", "address to listen on")
	storeFlags(fs, &cfg.store)
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&cfg.bodyLimit, "body-limit", api.DefaultBodyLimit, "largest request body, in bytes")
	fs.DurationVar(&cfg.readTimeout, "read-timeout", api.DefaultReadTimeout, "time allowed to read a whole request")
	fs.DurationVar(&cfg.writeTimeout, "write-timeout", api.DefaultWriteTimeout, "time allowed to write a response")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", api.DefaultIdleTimeout, "time a keep-alive connection may wait for its next request")
	fs.StringVar(&cfg.publicURL, "public-url", "", "the address handsets reach the server at, for enrollment QR codes (default: the address each request came to)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "time requests in flight get to finish on SIGINT or SIGTERM")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate (PEM, with its chain); with --tls-key, serve HTTPS. SIGHUP reloads both")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", "", "addresses or networks (comma-separated) of proxies whose X-Forwarded-For is believed")
	fs.StringVar(&cfg.attestationRoots, "attestation-roots", "", "a PEM file of the roots handset key attestations must end at (default: Google's, built in)")
	fs.StringVar(&cfg.masterKeyFile, "master-key-file", "", "a file of 32 random bytes that seals the token signing keys in the store (AES-256-GCM)")
	fs.DurationVar(&cfg.sweepEvery, "sweep-interval", 10*time.Minute, "how often ended sessions, dead enrollment codes and old audit events are removed")
	fs.DurationVar(&cfg.shiftWatchEvery, "shift-watch-interval", time.Minute, "how often shared handsets are checked for ones not handed back at the end of a shift (0: never)")
	fs.BoolVar(&cfg.demo, "demo", false, "start on a temporary store with demo users and handsets, and print commands to try (deleted at exit)")
	authFlags(fs, &cfg.auth)
	ldapFlags(fs, &cfg.ldap)
	eventsFlags(fs, &cfg.events)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if cfg.demo {
		dir, err := os.MkdirTemp("", "tether-demo-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.store = storeConfig{data: dir}
		cfg.auth.EnrollmentMode = auth.EnrollCode
	}
	if err := cfg.auth.Validate(); err != nil {
		return err
	}
	logger, err := newLogger(c.stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	proxies, err := parseProxies(cfg.trustedProxies)
	if err != nil {
		return err
	}
	master, err := loadMaster(cfg.masterKeyFile)
	if err != nil {
		return err
	}
	evCfg, err := cfg.events.load()
	if err != nil {
		return err
	}
	var cert *certificate
	switch {
	case cfg.tlsCert != "" && cfg.tlsKey != "":
		if cert, err = loadCertificate(cfg.tlsCert, cfg.tlsKey); err != nil {
			return err
		}
	case cfg.tlsCert != "" || cfg.tlsKey != "":
		return errors.New("--tls-cert and --tls-key go together")
	}

	metrics := api.NewMetrics()
	store, err := openStore(ctx, cfg.store, metrics.ObserveTx)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("close store", "error", err)
		}
	}()
	if fi, err := os.Stat(cfg.store.data); err == nil && !cfg.store.external() && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("data directory is readable by other users; chmod 700 it", "data", cfg.store.data, "mode", fi.Mode().Perm().String())
	}

	svc, err := newServices(store, c.hashParams)
	if err != nil {
		return err
	}
	authOpts := []auth.ServiceOption{auth.WithLogger(logger), auth.WithObserver(metrics.ObserveEvent), auth.WithMasterKey(master), auth.WithSuspender(svc.devices)}
	if cfg.attestationRoots != "" {
		data, err := os.ReadFile(cfg.attestationRoots)
		if err != nil {
			return fmt.Errorf("--attestation-roots: %w", err)
		}
		roots, err := auth.ParseRoots(data)
		if err != nil {
			return fmt.Errorf("--attestation-roots %s: %w", cfg.attestationRoots, err)
		}
		authOpts = append(authOpts, auth.WithAttestationRoots(roots))
	}
	dir, err := cfg.ldap.open()
	if err != nil {
		return err
	}
	if dir != nil {
		defer dir.Close()
		if err := cfg.ldap.check(ctx, dir, func(msg string) {
			logger.Warn("the company directory cannot be reached: directory users cannot sign in until it can", "error", msg)
		}); err != nil {
			return err
		}
		authOpts = append(authOpts, auth.WithDirectory(dir))
	}
	if cfg.publicURL != "" {
		if err := oauth.ValidateIssuer(cfg.publicURL); err != nil {
			return fmt.Errorf("--public-url: %w", err)
		}
		cfg.auth.OAuthIssuer = strings.TrimSuffix(cfg.publicURL, "/")
	}
	if off := passkeysFromPublicURL(&cfg.auth, cfg.publicURL); off != "" {
		logger.Warn(off)
	}
	authSvc, err := auth.NewService(ctx, cfg.auth, store, svc.hasher, svc.validate, authOpts...)
	if err != nil {
		return err
	}
	provider, err := newProvider(ctx, cfg.publicURL, authSvc, store, logger)
	if err != nil {
		return err
	}
	if master == nil {
		logger.Warn("token signing keys are stored unsealed in the store: pass --master-key-file to seal them")
	}
	if cfg.publicURL == "" && cfg.auth.DeviceProof != auth.ProofOff {
		logger.Warn("handset proofs (DPoP) are checked against the URL each request names, its Host header (and X-Forwarded-Host and -Proto from --trusted-proxies): pass --public-url so they are checked against the server's own address")
	}
	// The sinks' routes are kept in the store before anything is served,
	// so every event from now on is queued for them; none configured, none
	// is (and the queues of sinks dropped from the configuration stay, to
	// be seen in the console).
	dispatcher, err := events.New(ctx, store, evCfg, events.Options{Source: cfg.publicURL, Logger: logger, Observer: metrics})
	if err != nil {
		return err
	}
	var demoSeed demo
	if cfg.demo {
		if demoSeed, err = seedDemo(ctx, svc, authSvc); err != nil {
			return err
		}
	}
	app := api.New(api.Deps{
		Store:   store,
		Devices: svc.devices,
		Users:   svc.users,
		APIKeys: svc.apiKeys,
		Auth:    authSvc,
		OAuth:   provider,
		Logger:  logger,
		Metrics: metrics,
		Events:  dispatcher,
	}, api.Options{
		BodyLimit:      cfg.bodyLimit,
		ReadTimeout:    cfg.readTimeout,
		WriteTimeout:   cfg.writeTimeout,
		IdleTimeout:    cfg.idleTimeout,
		PublicURL:      cfg.publicURL,
		Version:        version,
		TrustedProxies: proxies,
	})

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if cert != nil {
		ln, scheme = tls.NewListener(ln, cert.config()), "https"
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go cert.reloadOn(hup, logger)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(api.Listener(ln)) }()
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "store", cfg.store.String(), "version", version,
		"enrollment_mode", cfg.auth.EnrollmentMode, "sim_policy", cfg.auth.SIMPolicy)
	if cfg.demo {
		printDemo(c.stdout, demoBase(ln.Addr().String()), demoSeed)
	}

	sweepCtx, stopSweeper := context.WithCancel(ctx)
	defer stopSweeper()
	if cfg.sweepEvery > 0 {
		go authSvc.RunSweeper(sweepCtx, cfg.sweepEvery)
	}
	if dir != nil && cfg.ldap.syncInterval > 0 {
		go authSvc.RunDirectorySync(sweepCtx, cfg.ldap.syncInterval)
	}
	if cfg.shiftWatchEvery > 0 {
		go authSvc.RunShiftWatch(sweepCtx, cfg.shiftWatchEvery)
	}
	delivered := make(chan struct{})
	go func() { dispatcher.Run(sweepCtx); close(delivered) }()
	if sinks := dispatcher.Sinks(); len(sinks) > 0 {
		logger.Info("pushing the audit trail", "sinks", strings.Join(sinks, ","))
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing requests in flight", "timeout", cfg.shutdownTimeout)
	if err := app.ShutdownWithTimeout(cfg.shutdownTimeout); err != nil {
		logger.Error("shutdown", "error", err)
	}
	// What is still queued is delivered at the next start, by this
	// instance or another.
	stopSweeper()
	<-delivered
	logger.Info("stopped")
	return nil
}

// newProvider is the OAuth provider for the public URL, or nil without
// one; a store with OAuth clients needs one, for its clients would
// otherwise fail without a word.
func newProvider(ctx context.Context, publicURL string, a *auth.Service, store storage.Store, logger *slog.Logger) (*oauth.Provider, error) {
	if publicURL == "" {
		clients, err := store.ListOAuthClients(ctx)
		if err != nil {
			return nil, err
		}
		if len(clients) > 0 {
			return nil, fmt.Errorf("the store has %d OAuth client(s), and OAuth needs the server's issuer URL: pass --public-url (TETHER_PUBLIC_URL), such as https://tether.example.com", len(clients))
		}
		return nil, nil
	}
	return oauth.New(oauth.Config{Issuer: publicURL}, a, store, oauth.WithLogger(logger))
}

// authFlags binds the login and token policies (API.md section 1).
func authFlags(fs *flag.FlagSet, a *auth.Config) {
	*a = auth.DefaultConfig()
	fs.StringVar(&a.EnrollmentMode, "enrollment-mode", a.EnrollmentMode, "how handsets get enrolled: preregistered, code or open (trials only)")
	fs.DurationVar(&a.AccessTTL, "access-ttl", a.AccessTTL, "access token lifetime")
	fs.DurationVar(&a.RenewWindow, "renew-window", a.RenewWindow, "how long after expiry an access token may still be renewed")
	fs.DurationVar(&a.SessionIdle, "session-idle", a.SessionIdle, "a persistent session ends after this long unused")
	fs.DurationVar(&a.SessionMax, "session-max", a.SessionMax, "a persistent session ends this long after login")
	fs.DurationVar(&a.ShortIdle, "session-idle-short", a.ShortIdle, "idle lifetime of a session whose login said persistent: false")
	fs.DurationVar(&a.ShortMax, "session-max-short", a.ShortMax, "absolute lifetime of a session whose login said persistent: false")
	fs.DurationVar(&a.RefreshReuseGrace, "refresh-reuse-grace", a.RefreshReuseGrace, "a rotated refresh token, or a renewed access token, retried within this gets the same answer")
	fs.StringVar(&a.MinAppVersion, "min-app-version", a.MinAppVersion, "oldest app version that may log in (none by default)")
	fs.IntVar(&a.MinOSAPI, "min-os-api", a.MinOSAPI, "oldest Android API level that may log in")
	fs.BoolVar(&a.RequireDevice, "require-device", a.RequireDevice, "workers must log in from an enrolled handset")
	fs.StringVar(&a.SIMPolicy, "sim-policy", a.SIMPolicy, "a login whose SIMs differ from the enrolled ones: allow, audit or block")
	fs.StringVar(&a.Issuer, "issuer", a.Issuer, "the iss claim of access tokens")
	fs.StringVar(&a.Audience, "audience", a.Audience, "the aud claim of access tokens")
	fs.StringVar(&a.TokenAlg, "token-alg", a.TokenAlg, "the algorithm access tokens are signed with: EdDSA, ES256 or RS256 (for resource servers that cannot verify EdDSA; RS256 signs slowest); tokens of all three verify, and the JWKS has a key of each")
	fs.IntVar(&a.AccountFailures, "max-account-failures", a.AccountFailures, "failed passwords for an account from one client address before each further attempt from it waits (1s, doubling; 0: no limit)")
	fs.IntVar(&a.AccountFailuresTotal, "max-account-failures-total", a.AccountFailuresTotal, "failed passwords for an account from all addresses together before its logins wait, but from a handset assigned to it (0: no limit)")
	fs.IntVar(&a.AddressFailures, "max-address-failures", a.AddressFailures, "failed passwords (and enrollment codes) from one client address, any account, before its attempts wait (0: no limit)")
	fs.DurationVar(&a.FailureWindow, "failure-window", a.FailureWindow, "the longest wait after failed logins, and how long failures are remembered past it")
	fs.DurationVar(&a.HashMaxWait, "login-max-wait", a.HashMaxWait, "how long a login may expect to wait for its password check (the checks ahead, at their measured pace) before it is refused at once with 503 server_busy and Retry-After")
	fs.DurationVar(&a.AuditRetention, "audit-retention", a.AuditRetention, "how long audit events are kept (0: for ever)")
	fs.StringVar((*string)(&a.DeviceProof), "device-proof", string(a.DeviceProof), "handset keys: off, optional (a handset with an enrolled key proves every login, refresh and renewal with it) or required (every handset must have one)")
	fs.Func("device-proof-groups", "per-group --device-proof, as GROUP=POLICY,… (such as vault=required,lab=off)", func(v string) error {
		groups, err := parseGroupPolicies(v)
		if err == nil {
			a.DeviceProofGroups = groups
		}
		return err
	})
	fs.BoolVar(&a.RequireAttestation, "require-attestation", a.RequireAttestation, "refuse handset keys without an Android key attestation")
	fs.BoolVar(&a.DPoPNonce, "dpop-nonce", a.DPoPNonce, "make DPoP proofs carry a server nonce, handed out in the DPoP-Nonce header of every answer")
	fs.StringVar((*string)(&a.AdminMFA), "admin-mfa", string(a.AdminMFA), "admins' second factor: required (an admin without one enrolls an authenticator app at their next sign-in) or optional (one with a factor proves it at every sign-in)")
	fs.StringVar((*string)(&a.ManagerMFA), "manager-mfa", string(a.ManagerMFA), "managers' second factor: required or optional, as --admin-mfa")
	fs.StringVar(&a.TOTPIssuer, "totp-issuer", a.TOTPIssuer, "the name authenticator apps show beside this server's accounts")
	fs.StringVar(&a.WebAuthnRPID, "webauthn-rp-id", a.WebAuthnRPID, "the relying party id of passkeys: a host name, the console's or a parent domain of it (default: the host of --public-url; without either, passkeys are off)")
	fs.Func("webauthn-origins", "the origins (scheme://host[:port], comma-separated) the console is served at, the only ones whose passkey answers are accepted (default: the origin of --public-url)", func(v string) error {
		a.WebAuthnOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				a.WebAuthnOrigins = append(a.WebAuthnOrigins, strings.TrimSuffix(o, "/"))
			}
		}
		return nil
	})
	fs.BoolVar(&a.RotateReauthentication, "token-login-rotate", a.RotateReauthentication, "token-login's TokenLogin rotates the re-authentication token at every use, as a refresh does (a stolen copy used after its owner ends the session, but clients that keep the login's token stop working)")
}

// newLogger returns a structured logger writing to w, which adds the request
// id to every line logged for a request.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	return slog.New(api.LogHandler(h)), nil
}

// parseGroupPolicies reads GROUP=POLICY pairs separated by commas.
func parseGroupPolicies(v string) (map[string]auth.DeviceProof, error) {
	out := map[string]auth.DeviceProof{}
	for _, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		group, policy, ok := strings.Cut(pair, "=")
		group, policy = strings.TrimSpace(group), strings.TrimSpace(policy)
		if !ok || group == "" || policy == "" {
			return nil, fmt.Errorf("%q: want GROUP=off|optional|required", pair)
		}
		out[group] = auth.DeviceProof(policy)
	}
	return out, nil
}

// passkeysFromPublicURL makes the host and origin of publicURL the
// relying party id and origin of passkeys, where --webauthn-rp-id and
// --webauthn-origins name none. A public URL whose host is an IP address
// names no relying party (browsers take host names only): passkeys stay
// off, and it returns why, for the log.
func passkeysFromPublicURL(a *auth.Config, publicURL string) (off string) {
	u, err := url.Parse(publicURL)
	if publicURL == "" || err != nil || u.Hostname() == "" {
		return ""
	}
	if a.WebAuthnRPID == "" {
		if net.ParseIP(u.Hostname()) != nil {
			return "passkeys are off: the host of --public-url is an IP address, and passkeys need a host name (--webauthn-rp-id)"
		}
		a.WebAuthnRPID = u.Hostname()
	}
	if len(a.WebAuthnOrigins) == 0 {
		a.WebAuthnOrigins = []string{u.Scheme + "://" + u.Host}
	}
	return ""
}
