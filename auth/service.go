package auth

import (
	"github.com/go-webauthn/webauthn/webauthn"

	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-playground/validator/v10"

	"tether"
	"tether/device"
	"tether/storage"
)

// Enrollment modes: how a handset comes to be enrolled.
const (
	// EnrollPreregistered: only handsets a manager registered may log in.
	EnrollPreregistered = "preregistered"
	// EnrollCode: a handset may enroll itself with a one-time code.
	EnrollCode = "code"
	// EnrollOpen: the first login from a handset enrolls it. For trials.
	EnrollOpen = "open"
)

// SIM policies: what a login whose ICC IDs differ from the enrolled ones does.
const (
	SIMAllow = "allow"
	SIMAudit = "audit"
	SIMBlock = "block"
)

// Config holds the login and token policies. Zero fields take the defaults
// of DefaultConfig.
type Config struct {
	Issuer   string
	Audience string
	// OAuthIssuer is the iss of the tokens of OAuth clients' sessions
	// (the OpenID provider's issuer URL, --public-url), so resource
	// servers configured from the issuer URL accept them; empty without
	// OAuth. The native API's tokens keep Issuer.
	OAuthIssuer string
	// TokenAlg is the algorithm access tokens are signed with: EdDSA (the
	// default, also when empty), ES256 or RS256. Tokens of every algorithm
	// verify whatever it is, so it can be changed on a running fleet.
	TokenAlg string

	AccessTTL   time.Duration
	RenewWindow time.Duration
	// SessionIdle and SessionMax bound persistent sessions; ShortIdle and
	// ShortMax the others.
	SessionIdle       time.Duration
	SessionMax        time.Duration
	ShortIdle         time.Duration
	ShortMax          time.Duration
	RefreshReuseGrace time.Duration
	// RotateReauthentication makes a re-authentication (Reauthenticate:
	// token-login's TokenLogin) rotate the refresh token as a refresh does,
	// so that a stolen copy used after its owner's next use ends the
	// session; the client must then keep the newest token. Off (the
	// default), the token issued at login is reused until the session
	// ends, as token-login's clients expect.
	RotateReauthentication bool

	EnrollmentMode string
	// MinAppVersion is empty for no minimum.
	MinAppVersion string
	MinOSAPI      int
	// RequireDevice makes workers log in from an enrolled handset.
	RequireDevice bool
	SIMPolicy     string

	// Failed passwords let through freely before each further attempt
	// waits (1 s, doubling after each failure, up to FailureWindow): per
	// account from one client address, per account from every address
	// together (which does not hold back a login from the account's own
	// handset), and per address over every account. 0 turns one off.
	AccountFailures      int
	AccountFailuresTotal int
	AddressFailures      int
	// FailureWindow is the longest wait, and how long a counter is kept
	// quiet past its wait before it is forgotten.
	FailureWindow time.Duration
	// HashConcurrency bounds password hashes running at once (default: the
	// number of CPUs); HashQueue how many more may wait.
	HashConcurrency int
	HashQueue       int
	// HashMaxWait is how long a password check may expect to wait for its
	// turn (the checks ahead of it, at their measured pace) before it is
	// refused at once with server_busy (0: the default, one second).
	HashMaxWait time.Duration

	// AuditRetention is how long audit events are kept (0: for ever).
	AuditRetention time.Duration

	// DeviceProof is the proof-of-possession policy for handset keys;
	// DeviceProofGroups overrides it for the handsets of some groups
	// (self-enrollment follows DeviceProof).
	DeviceProof       DeviceProof
	DeviceProofGroups map[string]DeviceProof
	// RequireAttestation refuses handset keys without an Android key
	// attestation.
	RequireAttestation bool
	// DPoPNonce makes proofs carry a server nonce (DPoP-Nonce).
	DPoPNonce bool

	// AdminMFA and ManagerMFA say whether admins and managers must have
	// a second factor (docs/security.md); TOTPIssuer names the server in
	// authenticator apps.
	AdminMFA   MFAPolicy
	ManagerMFA MFAPolicy
	TOTPIssuer string
	// WebAuthnRPID is the relying party id of passkeys (a host name, such
	// as the host of --public-url); "" turns passkeys off.
	// WebAuthnOrigins are the origins (scheme://host[:port]) the console
	// is served at, the only ones whose passkey answers are accepted.
	WebAuthnRPID    string
	WebAuthnOrigins []string
}

// DefaultConfig is the policy of API.md section 1.
func DefaultConfig() Config {
	return Config{
		Issuer:               "tether",
		Audience:             "tether",
		TokenAlg:             EdDSA,
		AccessTTL:            15 * time.Minute,
		RenewWindow:          24 * time.Hour,
		SessionIdle:          720 * time.Hour,
		SessionMax:           2160 * time.Hour,
		ShortIdle:            12 * time.Hour,
		ShortMax:             24 * time.Hour,
		RefreshReuseGrace:    10 * time.Second,
		EnrollmentMode:       EnrollPreregistered,
		MinOSAPI:             26,
		RequireDevice:        true,
		SIMPolicy:            SIMAudit,
		AccountFailures:      5,
		AccountFailuresTotal: 20,
		AddressFailures:      50,
		FailureWindow:        15 * time.Minute,
		HashConcurrency:      runtime.NumCPU(),
		HashQueue:            64,
		HashMaxWait:          time.Second,
		AuditRetention:       365 * 24 * time.Hour,
		DeviceProof:          ProofOptional,
		AdminMFA:             MFARequired,
		ManagerMFA:           MFAOptional,
		TOTPIssuer:           "Tether",
	}
}

// Validate reports a policy that makes no sense.
func (c Config) Validate() error {
	var errs []error
	switch c.EnrollmentMode {
	case EnrollPreregistered, EnrollCode, EnrollOpen:
	default:
		errs = append(errs, fmt.Errorf("enrollment mode %q: want preregistered, code or open", c.EnrollmentMode))
	}
	if c.TokenAlg != "" && !slices.Contains(Algorithms(), c.TokenAlg) {
		errs = append(errs, fmt.Errorf("token algorithm %q: want EdDSA, ES256 or RS256", c.TokenAlg))
	}
	switch c.SIMPolicy {
	case SIMAllow, SIMAudit, SIMBlock:
	default:
		errs = append(errs, fmt.Errorf("SIM policy %q: want allow, audit or block", c.SIMPolicy))
	}
	for group, p := range c.DeviceProofGroups {
		if p != ProofOff && p != ProofOptional && p != ProofRequired {
			errs = append(errs, fmt.Errorf("device proof %q for group %q: want off, optional or required", p, group))
		}
	}
	switch c.DeviceProof {
	case ProofOff, ProofOptional, ProofRequired:
	default:
		errs = append(errs, fmt.Errorf("device proof %q: want off, optional or required", c.DeviceProof))
	}
	for role, p := range map[string]MFAPolicy{"admin": c.AdminMFA, "manager": c.ManagerMFA} {
		if p != MFARequired && p != MFAOptional {
			errs = append(errs, fmt.Errorf("%s second-factor policy %q: want required or optional", role, p))
		}
	}
	if issuer := strings.TrimSpace(c.TOTPIssuer); issuer == "" || len(issuer) > 64 || strings.Contains(issuer, ":") || !tether.Printable(issuer) {
		errs = append(errs, fmt.Errorf("TOTP issuer %q: want printable text of 1 to 64 bytes, without a colon", c.TOTPIssuer))
	}
	if c.WebAuthnRPID != "" && len(c.WebAuthnOrigins) == 0 {
		errs = append(errs, fmt.Errorf("passkeys for %q: name the origins the console is served at", c.WebAuthnRPID))
	}
	if c.MinAppVersion != "" {
		if _, err := device.ParseAppVersion(c.MinAppVersion); err != nil {
			errs = append(errs, fmt.Errorf("minimum app version: %w", err))
		}
	}
	for name, d := range map[string]time.Duration{
		"access TTL": c.AccessTTL, "session idle": c.SessionIdle, "session max": c.SessionMax,
		"short session idle": c.ShortIdle, "short session max": c.ShortMax,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.FailureWindow <= 0 && (c.AccountFailures > 0 || c.AccountFailuresTotal > 0 || c.AddressFailures > 0) {
		errs = append(errs, errors.New("failure window must be positive"))
	}
	if c.RenewWindow < 0 || c.RefreshReuseGrace < 0 || c.AuditRetention < 0 {
		errs = append(errs, errors.New("renewal window and refresh reuse grace cannot be negative"))
	}
	if c.HashMaxWait < 0 {
		errs = append(errs, errors.New("login max wait cannot be negative"))
	}
	return errors.Join(errs...)
}

// Service applies the login, token and session rules.
type Service struct {
	cfg Config
	// passkeys is the WebAuthn relying party, nil when passkeys are off.
	passkeys *webauthn.WebAuthn
	minApp   *device.AppVersion
	store    storage.Store
	keys     *KeySet
	hasher   *Hasher
	validate *validator.Validate
	log      *slog.Logger
	now      func() time.Time

	// observe is told of every audit event the service writes, once it is
	// written (for metrics).
	observe func(storage.Event)
	master  *MasterKey

	throttle *throttle
	gate     *hashGate
	// replays holds the DPoP proofs seen, so each is used once.
	replays *replayCache
	// roots are the roots key attestations must end at.
	roots []*x509.Certificate
	// dummyHash is verified for unknown usernames, so they cost what a
	// known one does.
	dummyHash string

	// dir, when set, signs in the users it has (WithDirectory).
	dir Directory
	// dirUp is 1 when the directory answered last time it was asked, 0
	// when it did not, -1 before it is asked.
	dirUp atomic.Int32
	// syncing lets one directory sync run at a time in this process.
	syncing sync.Mutex

	// suspender, when set, suspends the shared handsets not handed back
	// (WithSuspender); unreturned is how many the last shift watch found.
	suspender  Suspender
	unreturned atomic.Int64
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithClock sets the clock.
func WithClock(now func() time.Time) ServiceOption {
	return func(s *Service) { s.now = now }
}

// WithObserver sets a function told of every audit event the service
// writes, after it is written: logins, refreshes and renewals by outcome.
func WithObserver(f func(storage.Event)) ServiceOption {
	return func(s *Service) { s.observe = f }
}

// WithMasterKey seals the signing keys in the store with m.
func WithMasterKey(m *MasterKey) ServiceOption {
	return func(s *Service) { s.master = m }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) ServiceOption {
	return func(s *Service) { s.log = l }
}

// NewService returns a Service, loading (or making) the signing keys.
func NewService(ctx context.Context, cfg Config, store storage.Store, hasher *Hasher, v *validator.Validate, opts ...ServiceOption) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TokenAlg == "" {
		cfg.TokenAlg = EdDSA
	}
	s := &Service{cfg: cfg, store: store, hasher: hasher, validate: v, now: time.Now, log: slog.Default()}
	for _, opt := range opts {
		opt(s)
	}
	if cfg.MinAppVersion != "" {
		v, err := device.ParseAppVersion(cfg.MinAppVersion)
		if err != nil {
			return nil, err
		}
		s.minApp = &v
	}
	keys, err := LoadKeys(ctx, store, cfg.AccessTTL+cfg.RenewWindow, s.now, s.master)
	if err != nil {
		return nil, err
	}
	s.keys = keys
	if s.passkeys, err = newPasskeys(cfg); err != nil {
		return nil, err
	}
	// Servers sharing a database share the throttle's counters too; a
	// server with a store of its own keeps them in memory.
	counters, ok := store.(storage.Throttles)
	if !ok {
		counters = NewMemoryThrottles(maxThrottleCounters)
	}
	s.throttle = &throttle{
		counters: counters, pair: cfg.AccountFailures, account: cfg.AccountFailuresTotal,
		address: cfg.AddressFailures, longest: cfg.FailureWindow, now: s.now,
	}
	s.gate = newHashGate(max(1, cfg.HashConcurrency), max(0, cfg.HashQueue))
	if cfg.HashMaxWait > 0 {
		s.gate.maxWait = cfg.HashMaxWait
	}
	s.replays = newReplayCache(maxReplays)
	if s.roots == nil {
		s.roots = GoogleRoots()
	}
	if s.dummyHash, err = hasher.Hash("not a password anyone has"); err != nil {
		return nil, err
	}
	if cfg.EnrollmentMode == EnrollOpen {
		s.log.Warn("enrollment mode is open: the first login from any handset enrolls it; use this for trials only")
	}
	return s, nil
}

// maxThrottleCounters bounds the throttle's counters kept in memory: some
// 30 MiB.
const maxThrottleCounters = 100_000

// Config returns the policies in force.
func (s *Service) Config() Config { return s.cfg }

// Keys returns the signing keys.
func (s *Service) Keys() *KeySet { return s.keys }

// HashQueueDepth returns how many password hashes are running or waiting.
func (s *Service) HashQueueDepth() int { return s.gate.depth() }

// event starts an audit event, with the request's origin from ctx.
func (s *Service) event(ctx context.Context, action, outcome string) storage.Event {
	return storage.NewEvent(ctx, s.now(), action, outcome, "")
}

// record appends events outside any other write. A failure is logged, not
// returned: the request it describes has already been answered or refused.
func (s *Service) record(ctx context.Context, events ...storage.Event) {
	if err := s.store.AppendEvents(ctx, events...); err != nil {
		s.log.ErrorContext(ctx, "audit event lost", "action", events[0].Action, "error", err)
	}
	s.written(events...)
}

// written tells the observer of events that were written.
func (s *Service) written(events ...storage.Event) {
	if s.observe == nil {
		return
	}
	for _, e := range events {
		s.observe(e)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// LoginRequest is a login.
type LoginRequest struct {
	Username string
	Password string
	// Device is the handset's payload; nil for a login without one.
	Device *device.Payload
	// ClientID and Scope open the session for an OAuth client: its tokens
	// carry them, and only that client may refresh it. Empty for the
	// native API.
	ClientID string
	Scope    string
	// AuthTime is when the person proved who they are, where that was
	// before this request (an OAuth code redeemed); zero means now.
	AuthTime time.Time
	// DPoPJKT, when set, is the key the request's DPoP proof must be made
	// with (an OAuth dpop_jkt).
	DPoPJKT string
	// DeviceRef names the handset for clients that send no payload: an
	// enrolled handset by its id or IMEI (every handset rule applies), or
	// any other device name, to which the session is then bound (renewed
	// and refreshed only with the same name), under the rules of a login
	// without a handset. It is ignored when Device is set.
	DeviceRef string
	// BoundDevice, when set, is the handset the request must come from (an
	// OAuth code's): a payload naming another handset is refused.
	BoundDevice string
	Persistent  bool
	// SecondFactor says the client can take a second step (a second
	// factor, or enrolling one): without it, an account that needs one is
	// refused with ErrMFAUnsupported.
	SecondFactor bool
	// AMR is how the person proved who they are, where that was before
	// this request (an OAuth code redeemed, a second factor): the
	// session's and its tokens' amr. Empty means a password alone.
	AMR []string
}

// Grant is what a successful login, refresh or renewal hands out.
type Grant struct {
	AccessToken     string
	AccessExpiresAt time.Time
	// RefreshToken is empty for a renewal.
	RefreshToken     string
	RefreshExpiresAt time.Time
	Session          storage.Session
	User             storage.User
	// Device is nil for a session without a handset.
	Device *storage.Device
}

// Login checks a username, password and handset, and opens a session.
func (s *Service) Login(ctx context.Context, req LoginRequest) (Grant, error) {
	ev := s.loginEvent(ctx, "login", req)
	fail := s.failLogin(ctx, &ev)
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return Grant{}, err
	}
	user, err := s.guardedCheck(ctx, req.Username, req.Password, s.ownHandset(ctx, req))
	if err != nil {
		return Grant{}, fail(err)
	}
	if err := s.secondStep(ctx, user, req, &ev); err != nil {
		if errors.Is(err, ErrMFARequired) || errors.Is(err, ErrMFAEnrollment) {
			s.rehash(ctx, user, req.Password)
			return Grant{}, err
		}
		return Grant{}, fail(err)
	}
	req.AMR = nil
	grant, err := s.admitAndOpen(ctx, user, req, deviceName, &ev)
	if err != nil {
		return Grant{}, fail(err)
	}
	s.rehash(ctx, user, req.Password)
	return grant, nil
}

// SignedIn is a person who proved their password, and the handset the
// request named, admitted: the first half of a login, for the OAuth flows
// whose tokens are issued later (Open).
type SignedIn struct {
	User storage.User
	// Device is the admitted handset, or nil.
	Device *storage.Device
	// DeviceName is the device name the request gave instead, or "".
	DeviceName string
	At         time.Time
	// AMR is how the person proved who they are.
	AMR []string
}

// SignIn checks a username, password and handset as Login does (the
// throttle, the directory, every handset rule) but opens no session: an
// OAuth authorization or a device approval, whose tokens Open issues when
// the client redeems it. It is audited as oauth.sign_in.
func (s *Service) SignIn(ctx context.Context, req LoginRequest) (SignedIn, error) {
	ev := s.loginEvent(ctx, "oauth.sign_in", req)
	fail := s.failLogin(ctx, &ev)
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return SignedIn{}, err
	}
	user, err := s.guardedCheck(ctx, req.Username, req.Password, s.ownHandset(ctx, req))
	if err != nil {
		return SignedIn{}, fail(err)
	}
	if err := s.secondStep(ctx, user, req, &ev); err != nil {
		if errors.Is(err, ErrMFARequired) || errors.Is(err, ErrMFAEnrollment) {
			s.rehash(ctx, user, req.Password)
			return SignedIn{}, err
		}
		return SignedIn{}, fail(err)
	}
	s.rehash(ctx, user, req.Password)
	return s.signedIn(ctx, user, req, deviceName, []string{AMRPassword}, &ev, fail)
}

// Open issues the tokens of a sign-in made earlier (SignIn) to an OAuth
// client: the user and the handset named by req (its payload, or its id
// as DeviceRef) are checked again, the handset's key is proven with the
// request's DPoP proof where it has one, and a session is opened, as at
// the end of Login. req's Username and Password are not used.
func (s *Service) Open(ctx context.Context, userID string, req LoginRequest) (Grant, error) {
	ev := s.loginEvent(ctx, "login", req)
	ev.UserID = userID
	fail := s.failLogin(ctx, &ev)
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return Grant{}, err
	}
	user, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return Grant{}, fail(ErrAccountDisabled)
	}
	if err != nil {
		return Grant{}, fail(err)
	}
	return s.admitAndOpen(ctx, user, req, deviceName, &ev)
}

// loginEvent starts the audit event of a login (or of one of its halves).
func (s *Service) loginEvent(ctx context.Context, action string, req LoginRequest) storage.Event {
	ev := s.event(ctx, action, "failure")
	ev.Username = printableName(req.Username)
	if req.ClientID != "" {
		ev.Detail = map[string]string{"client": truncate(req.ClientID, 64)}
	}
	return ev
}

// failLogin returns a function that records ev as failed with err's
// reason and returns err.
func (s *Service) failLogin(ctx context.Context, ev *storage.Event) func(error) error {
	return func(err error) error {
		ev.Reason = reasonOf(err)
		s.record(ctx, *ev)
		return err
	}
}

// checkLoginRequest validates what a login request carries before
// anything costly: a bad payload or device name is the client's mistake,
// answered at once and not counted as a failed login. It returns the
// device name the request gives instead of a handset, if it does.
func (s *Service) checkLoginRequest(req *LoginRequest) (string, error) {
	if req.Device != nil {
		req.Device.Normalize()
		if err := device.Validate(s.validate, *req.Device, "device.", true); err != nil {
			return "", err
		}
	}
	if ref := req.DeviceRef; req.Device == nil && strings.TrimSpace(ref) != "" && !namesHandset(ref) {
		if len(ref) > maxDeviceName || !tether.Printable(ref) {
			return "", tether.Invalid("deviceId", "device_name_invalid", fmt.Sprintf("a device name is printable text of at most %d bytes", maxDeviceName))
		}
		return ref, nil
	}
	return "", nil
}

// admitFor applies the rules of the account and the handset a request
// names to user: the account enabled, then the handset (its payload, its
// id or IMEI, or a device name that is no handset), or none where the
// user may log in without one. It returns the admitted handset and the
// events to write with the session.
func (s *Service) admitFor(ctx context.Context, user storage.User, req LoginRequest, deviceName string, ev *storage.Event) (*storage.Device, []storage.Event, error) {
	ev.UserID, ev.Username = user.ID, user.Username
	if user.Disabled {
		return nil, nil, ErrAccountDisabled
	}
	switch {
	case req.Device != nil:
		// Another handset's payload is refused before it is admitted,
		// which writes what it reports to that handset's record.
		if req.BoundDevice != "" && !sameDevice(s.resolveDevice(ctx, req.Device.IMEI), req.BoundDevice) {
			return nil, nil, ErrDeviceMismatch
		}
		d, evs, err := s.admitDevice(ctx, user, *req.Device)
		ev.DeviceID = d.ID
		if err != nil {
			return nil, nil, err
		}
		if req.BoundDevice != "" && !sameDevice(d.ID, req.BoundDevice) {
			return nil, nil, ErrDeviceMismatch
		}
		return &d, evs, nil
	case deviceName != "":
		// A name, not a handset: the rules of a login without one, and
		// the session bound to the name.
		if ev.Detail == nil {
			ev.Detail = map[string]string{}
		}
		ev.Detail["deviceName"] = truncate(deviceName, 64)
		if user.Role == storage.RoleWorker && s.cfg.RequireDevice {
			return nil, nil, ErrDeviceNotEnrolled
		}
	case strings.TrimSpace(req.DeviceRef) != "":
		d, err := s.admitDeviceRef(ctx, user, req.DeviceRef)
		ev.DeviceID = d.ID
		if err != nil {
			return nil, nil, err
		}
		return &d, nil, nil
	case user.Role == storage.RoleWorker && s.cfg.RequireDevice:
		return nil, nil, tether.Invalid("device", "device_required", "workers log in from an enrolled handset: send the device payload")
	}
	return nil, nil, nil
}

// admitAndOpen is the end of a login: the account and handset admitted,
// the handset's key proven (and a key the payload offers enrolled), and
// the session opened with ev as its success event.
func (s *Service) admitAndOpen(ctx context.Context, user storage.User, req LoginRequest, deviceName string, ev *storage.Event) (Grant, error) {
	dev, events, err := s.admitFor(ctx, user, req, deviceName, ev)
	if err != nil {
		return Grant{}, err
	}
	var offered device.Payload
	if req.Device != nil {
		offered = *req.Device
	}
	handsetKey, err := s.proveLogin(ctx, user, dev, offered)
	if err != nil {
		return Grant{}, err
	}
	jkt := handsetKey
	if req.ClientID != "" {
		if jkt, err = s.clientKey(ctx, handsetKey, req.DPoPJKT); err != nil {
			return Grant{}, err
		}
	}
	amrDetail(ev, amrOf(req))
	return s.openSession(ctx, user, dev, deviceName, jkt, handsetKey, req, append(events, withOutcome(*ev, "success")))
}

// clientKey is the key an OAuth client's session is bound to (RFC 9449):
// the handset's (bound, already proven), or, for a session without a
// handset key, the key of the request's DPoP proof where it carries one,
// so its tokens are DPoP-bound. want, when set (dpop_jkt), is the key the
// authorization request named: the proof must be made with it.
func (s *Service) clientKey(ctx context.Context, bound, want string) (string, error) {
	if bound != "" {
		if want != "" && subtle.ConstantTimeCompare([]byte(bound), []byte(want)) != 1 {
			return "", proofError("the proof is not made with the key the authorization request named (dpop_jkt)")
		}
		return bound, nil
	}
	p, ok := proofOf(ctx)
	if !ok {
		if want != "" {
			return "", ErrProofRequired
		}
		return "", nil
	}
	cp, err := verifyProof(p, "", s.now())
	if err != nil {
		return "", err
	}
	if want != "" && subtle.ConstantTimeCompare([]byte(cp.jkt), []byte(want)) != 1 {
		return "", proofError("the proof is not made with the key the authorization request named (dpop_jkt)")
	}
	if err := s.requireProof(ctx, cp.jkt, ""); err != nil {
		return "", err
	}
	return cp.jkt, nil
}

// ProveClientKey is the key an OAuth client's DPoP proof on this request
// is made with, checked and used up, for a token without a session
// (client_credentials); "" without a proof, or with proofs off.
func (s *Service) ProveClientKey(ctx context.Context) (string, error) {
	return s.clientKey(ctx, "", "")
}

// maxDeviceName bounds a device name (LoginRequest.DeviceRef).
const maxDeviceName = 128

// namesHandset reports whether a client's device reference names a
// handset, enrolled or not (a device id or an IMEI), rather than being a
// free device name.
func namesHandset(ref string) bool {
	return strings.HasPrefix(strings.TrimSpace(ref), storage.PrefixDevice) || device.LooksLikeIMEI(ref)
}

// boundName checks that a refresh or renewal of a session without a
// handset names the device name its login gave (empty for none), exactly.
func boundName(sess storage.Session, deviceRef string) error {
	if sess.DeviceID == "" && subtle.ConstantTimeCompare([]byte(deviceRef), []byte(sess.DeviceName)) != 1 {
		return ErrDeviceMismatch
	}
	return nil
}

func withOutcome(ev storage.Event, outcome string) storage.Event {
	ev.Outcome, ev.Reason = outcome, ""
	return ev
}

// guardedCheck is checkPassword under the throttle: the attempt is counted
// before the hash (ErrTooManyAttempts if a limit holds it back), and taken
// back if the password was right or never checked. ownHandset says the
// attempt comes from a handset assigned to the account.
func (s *Service) guardedCheck(ctx context.Context, username, password string, ownHandset bool) (storage.User, error) {
	// A check that would wait too long is shed before it costs a write.
	if err := s.gate.shed(); err != nil {
		return storage.User{}, err
	}
	att, err := s.throttle.reserve(ctx, throttleName(username), tether.OriginOf(ctx).IP, ownHandset)
	if err != nil {
		return storage.User{}, err
	}
	user, err := s.checkPassword(ctx, username, password)
	var terr error
	switch {
	case err == nil && s.dueStep(user) != "":
		// The sign-in is not over: its second step ends it, and only a
		// right second factor forgets the failures (a stolen password
		// must not wipe out the codes guessed with it).
		terr = s.throttle.abandoned(ctx, att)
	case err == nil:
		terr = s.throttle.succeeded(ctx, att)
	case !errors.Is(err, ErrInvalidCredentials):
		terr = s.throttle.abandoned(ctx, att)
	}
	if terr != nil {
		// The attempt stays counted: the safe side.
		s.log.ErrorContext(ctx, "login throttle not updated", "error", terr)
	}
	return user, err
}

// ownHandset reports whether a login comes from an enrolled handset that
// is assigned to the account it names, proven by a valid proof of the
// handset's key where it has one: failures from elsewhere do not hold such
// a login back. The proof's replay check is left to the login itself.
func (s *Service) ownHandset(ctx context.Context, req LoginRequest) bool {
	var d storage.Device
	var err error
	switch {
	case req.Device != nil:
		d, err = s.store.GetDeviceByIMEI(ctx, req.Device.IMEI)
	case strings.TrimSpace(req.DeviceRef) != "":
		id := s.resolveDevice(ctx, req.DeviceRef)
		if id == "" {
			return false
		}
		d, err = s.store.GetDevice(ctx, id)
	default:
		return false
	}
	if err != nil || d.Status != storage.DeviceEnrolled || len(d.AssignedUsers) == 0 {
		return false
	}
	u, err := s.store.GetUserByUsername(ctx, req.Username)
	if err != nil || !slices.Contains(d.AssignedUsers, u.ID) {
		return false
	}
	if jkt := s.bindingOf(&d); jkt != "" {
		p, ok := proofOf(ctx)
		if !ok {
			return false
		}
		cp, err := verifyProof(p, "", s.now())
		if err != nil || subtle.ConstantTimeCompare([]byte(cp.jkt), []byte(jkt)) != 1 {
			return false
		}
	}
	return true
}

// checkPassword returns the user whose password matches, or
// ErrInvalidCredentials whether the user is unknown or the password wrong:
// both cost one full hash, and both answer the same.
func (s *Service) checkPassword(ctx context.Context, username, password string) (storage.User, error) {
	if len(password) > MaxPasswordLen || len(username) > 256 {
		return storage.User{}, ErrInvalidCredentials
	}
	release, err := s.gate.enter(ctx)
	if err != nil {
		return storage.User{}, err
	}
	defer release()
	user, err := s.store.GetUserByUsername(ctx, username)
	// A name no local user has, or a directory user's, is the directory's
	// to check; a local user of the same name wins.
	if s.dir != nil && (errors.Is(err, storage.ErrNotFound) || (err == nil && user.Directory != nil)) {
		return s.directoryPassword(ctx, username, password, user)
	}
	hash := user.PasswordHash
	switch {
	case errors.Is(err, storage.ErrNotFound) || (err == nil && hash == ""):
		hash = s.dummyHash
	case err != nil:
		return storage.User{}, err
	}
	ok, verr := s.hasher.Verify(password, hash)
	if verr != nil {
		s.log.ErrorContext(ctx, "stored password hash is malformed", "user", user.ID, "error", verr)
	}
	if !ok || err != nil || user.PasswordHash == "" {
		return storage.User{}, ErrInvalidCredentials
	}
	return user, nil
}

// rehash replaces a password hash made with older parameters.
func (s *Service) rehash(ctx context.Context, u storage.User, password string) {
	// A user without a hash of Tether's (a directory user's password is
	// the directory's) gets none.
	if u.PasswordHash == "" || !s.hasher.NeedsRehash(u.PasswordHash) {
		return
	}
	hash, err := s.hasher.Hash(password)
	if err == nil {
		_, err = s.store.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
			if cur.PasswordHash == u.PasswordHash {
				cur.PasswordHash = hash
			}
			return cur, nil
		})
	}
	if err != nil {
		s.log.WarnContext(ctx, "password rehash failed", "user", u.ID, "error", err)
	}
}

// admitDevice applies the handset rules of a login: version policies, the
// enrollment mode, the device's status and assignment, the SIM policy. It
// records what the handset reported (last seen, OS, app, SIMs) and returns
// the device and the events to write with the session.
func (s *Service) admitDevice(ctx context.Context, user storage.User, p device.Payload) (storage.Device, []storage.Event, error) {
	if p.OSVersion.API < s.cfg.MinOSAPI {
		return storage.Device{}, nil, ErrOSVersion.With("minOsApi", s.cfg.MinOSAPI)
	}
	if s.minApp != nil {
		v, err := device.ParseAppVersion(*p.AppVersion)
		if err != nil || v.Compare(*s.minApp) < 0 {
			return storage.Device{}, nil, ErrAppVersion.With("minAppVersion", s.cfg.MinAppVersion)
		}
	}
	now := s.now().UTC()
	var events []storage.Event
	d, err := s.store.GetDeviceByIMEI(ctx, p.IMEI)
	switch {
	case errors.Is(err, storage.ErrNotFound) && s.cfg.EnrollmentMode == EnrollOpen:
		d = storage.Device{
			ID: storage.NewID(storage.PrefixDevice), Status: storage.DeviceEnrolled,
			EnrolledAt: now, EnrolledBy: "user:" + user.ID, UpdatedAt: now,
		}
		device.Apply(&d, p)
		enrolled := s.event(ctx, "device.enroll", "success")
		enrolled.UserID, enrolled.Username, enrolled.DeviceID, enrolled.Actor = user.ID, user.Username, d.ID, "user:"+user.ID
		enrolled.Reason = "open enrollment at login"
		if err := s.store.CreateDevice(ctx, d, storage.WithEvents(enrolled)); err != nil {
			return storage.Device{}, nil, fmt.Errorf("open enrollment: %w", err)
		}
		s.written(enrolled)
		s.log.WarnContext(ctx, "handset enrolled by its first login (open enrollment)", "device", d.ID, "imei", d.IMEI, "user", user.ID)
		return d, nil, nil
	case errors.Is(err, storage.ErrNotFound):
		return storage.Device{}, nil, ErrDeviceNotEnrolled
	case err != nil:
		return storage.Device{}, nil, err
	}
	if err := s.admissible(ctx, user, d); err != nil {
		return d, nil, err
	}
	simChanged := len(d.IccIDs) > 0 && !sameSet(d.IccIDs, p.IccIDs)
	if simChanged {
		if s.cfg.SIMPolicy == SIMBlock {
			return d, nil, ErrSimChanged
		}
		if s.cfg.SIMPolicy == SIMAudit {
			ev := s.event(ctx, "device.sim_changed", "success")
			ev.UserID, ev.Username, ev.DeviceID = user.ID, user.Username, d.ID
			ev.Detail = map[string]string{"enrolled": fmt.Sprint(d.IccIDs), "reported": fmt.Sprint(p.IccIDs)}
			events = append(events, ev)
		}
	}
	d, err = s.store.UpdateDevice(ctx, d.ID, func(cur storage.Device) (storage.Device, error) {
		if err := deviceStatusError(cur.Status); err != nil {
			return cur, err
		}
		device.Apply(&cur, p)
		cur.LastSeenAt, cur.UpdatedAt = now, now
		return cur, nil
	})
	if err != nil {
		return d, nil, err
	}
	return d, events, nil
}

// admissible checks that a handset may be used by a user: enrolled, and,
// for a personal handset, assigned to them if it has assigned users; for a
// shared one, the user in its group or on the group's roster (see
// mayPickUp).
func (s *Service) admissible(ctx context.Context, user storage.User, d storage.Device) error {
	if err := deviceStatusError(d.Status); err != nil {
		return err
	}
	g, err := s.groupOf(ctx, d)
	if err != nil {
		return err
	}
	if storage.ModeOf(d, g) == storage.ModeShared {
		return mayPickUp(user, d, g)
	}
	if len(d.AssignedUsers) > 0 && !slices.Contains(d.AssignedUsers, user.ID) {
		return ErrDeviceNotAssigned
	}
	return nil
}

// groupOf returns the settings of a handset's group: the zero settings
// (with the name) for a group that has none, or a handset in no group.
func (s *Service) groupOf(ctx context.Context, d storage.Device) (storage.Group, error) {
	if d.Group == "" {
		return storage.Group{}, nil
	}
	g, err := s.store.GetGroup(ctx, d.Group)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Group{Name: d.Group}, nil
	}
	return g, err
}

// mayPickUp says whether user may pick up the shared handset d of group
// g: a handset in no group is anyone's; one in a group is for the users
// in that group (whose scopes hold it, or who have no scopes, being the
// whole fleet's) and those on the group's roster. Its assigned users play
// no part.
func mayPickUp(user storage.User, d storage.Device, g storage.Group) error {
	if d.Group == "" || len(user.Scopes) == 0 || slices.Contains(user.Scopes, d.Group) || slices.Contains(g.Roster, user.ID) {
		return nil
	}
	return ErrNotInGroup
}

// admitDeviceRef applies the handset rules to a login that names an
// enrolled handset instead of sending its payload: it must exist (no
// handset enrolls itself this way), be admissible, and what it last
// reported must meet the version policies.
func (s *Service) admitDeviceRef(ctx context.Context, user storage.User, ref string) (storage.Device, error) {
	id := s.resolveDevice(ctx, ref)
	if id == "" {
		return storage.Device{}, ErrDeviceNotEnrolled
	}
	d, err := s.store.GetDevice(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Device{}, ErrDeviceNotEnrolled
	}
	if err != nil {
		return storage.Device{}, err
	}
	if err := s.admissible(ctx, user, d); err != nil {
		return d, err
	}
	if d.OSAPI != 0 && d.OSAPI < s.cfg.MinOSAPI {
		return d, ErrOSVersion.With("minOsApi", s.cfg.MinOSAPI)
	}
	if s.minApp != nil && d.AppVersion != "" {
		if v, err := device.ParseAppVersion(d.AppVersion); err != nil || v.Compare(*s.minApp) < 0 {
			return d, ErrAppVersion.With("minAppVersion", s.cfg.MinAppVersion)
		}
	}
	now := s.now().UTC()
	return s.store.UpdateDevice(ctx, d.ID, func(cur storage.Device) (storage.Device, error) {
		if err := deviceStatusError(cur.Status); err != nil {
			return cur, err
		}
		cur.LastSeenAt = now
		return cur, nil
	})
}

// sameSet reports whether two lists hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// deviceStatusError is the error for a handset that may not log in.
func deviceStatusError(status storage.DeviceStatus) error {
	switch status {
	case storage.DeviceSuspended:
		return ErrDeviceSuspended
	case storage.DeviceRetired:
		return ErrDeviceRetired
	}
	return nil
}

// openSession creates the session of a login (replacing the user's older
// one on the same handset) and signs its tokens, bound to the key jkt. The
// handset and user are checked again inside the session's transaction, so
// a handset suspended or a user disabled while the password was being
// checked cannot end up with a live session, nor a session bound to the
// handset's key handsetKey once the handset has another. jkt is
// handsetKey but for an OAuth client's session without a handset key,
// bound to the key of the client's own proof.
func (s *Service) openSession(ctx context.Context, user storage.User, dev *storage.Device, deviceName, jkt, handsetKey string, req LoginRequest, events []storage.Event) (Grant, error) {
	now := s.now().UTC()
	idle, maxLife := s.cfg.ShortIdle, s.cfg.ShortMax
	if req.Persistent {
		idle, maxLife = s.cfg.SessionIdle, s.cfg.SessionMax
	}
	family := make([]byte, familyLen)
	randRead(family)
	refresh := newRefreshToken(family)
	sess := storage.Session{
		ID: storage.NewID(storage.PrefixSession), UserID: user.ID, Persistent: req.Persistent,
		CreatedAt: now, LastUsedAt: now, IdleTimeout: idle, ExpiresAt: now.Add(maxLife),
		FamilyHash: familyHash(family), RefreshHash: refresh.hash(), AccessJTI: newJTI(), JKT: jkt,
		ClientIP: tether.OriginOf(ctx).IP, UserAgent: truncate(tether.OriginOf(ctx).UserAgent, 256),
	}
	if dev != nil {
		sess.DeviceID = dev.ID
	} else {
		sess.DeviceName = deviceName
	}
	sess.ClientID, sess.Scope, sess.AuthTime = req.ClientID, req.Scope, req.AuthTime
	sess.AMR = slices.Clone(amrOf(req))
	if sess.AuthTime.IsZero() {
		sess.AuthTime = now
	}
	var (
		handed int
		share  []storage.WriteOption
	)
	if dev != nil {
		var err error
		if share, err = s.share(ctx, user, *dev, &sess, &handed); err != nil {
			return Grant{}, err
		}
	}
	sess.AccessExpiresAt = minTime(now.Add(s.cfg.AccessTTL), sess.ExpiresAt)
	// Sign with the store's newest key, not one another server revoked: a
	// login reads no session that would tell (a read of a few keys, next
	// to a password hash).
	if err := s.keys.sync(ctx); err != nil {
		return Grant{}, err
	}
	access, err := s.signAccess(sess, user.Role, sess.AccessJTI, now, sess.AccessExpiresAt)
	if err != nil {
		return Grant{}, fmt.Errorf("sign access token: %w", err)
	}
	sess.AccessHash = accessHash(access)
	for i := range events {
		events[i].SessionID = sess.ID
	}
	sess, err = s.store.CreateSession(ctx, sess, func(u storage.User, d storage.Device) error {
		if u.Disabled {
			return ErrAccountDisabled
		}
		if dev == nil {
			return nil
		}
		if err := deviceStatusError(d.Status); err != nil {
			return err
		}
		// The handset key the login was proven with is still the
		// handset's. (An OAuth client's own DPoP key, on a handset without
		// one, binds the session but is no key of the handset.)
		if handsetKey != "" && (d.Key == nil || d.Key.Thumbprint != handsetKey) {
			return proofError("the handset's key was replaced during the login")
		}
		// The handset's own mode decided whether the login hands it over.
		if d.Mode != dev.Mode {
			return ErrModeChanged
		}
		return nil
	}, append(share, storage.WithEvents(events...))...)
	if err != nil {
		return Grant{}, err
	}
	s.written(events...)
	for range handed {
		s.written(storage.Event{Action: "device.handover", Outcome: "success"})
	}
	return Grant{
		AccessToken: access, AccessExpiresAt: sess.AccessExpiresAt,
		RefreshToken: refresh.raw, RefreshExpiresAt: refreshExpiry(sess, now),
		Session: sess, User: user, Device: dev,
	}, nil
}

func refreshExpiry(sess storage.Session, now time.Time) time.Time {
	return minTime(now.Add(sess.IdleTimeout), sess.ExpiresAt)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
