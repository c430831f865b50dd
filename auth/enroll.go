package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
)

// Enrollment code limits.
const (
	DefaultCodeTTL  = 24 * time.Hour
	MaxCodeTTL      = 30 * 24 * time.Hour
	MaxCodeUses     = 10_000
	codeDigits      = 16
	crockfordDigits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

// NewCode is a manager's request for an enrollment code.
type NewCode struct {
	// TTL is how long the code works (default 24h, at most 30 days).
	TTL time.Duration
	// MaxUses is how many handsets it may enroll (default 1).
	MaxUses int
	// Label and Group are given to the handsets it enrolls.
	Label string
	Group string
}

// normalizeCode reads a code as people type it: any case, with or without
// dashes and spaces, I and L for 1, O for 0.
func normalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ':
			return -1
		case 'I', 'i', 'L', 'l':
			return '1'
		case 'O', 'o':
			return '0'
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, code)
}

func codeHash(normalized string) []byte { return sha256Sum("tether enrollment code\x00" + normalized) }

// CreateEnrollmentCode makes a one-time (or n-time) code and returns it
// with its record. The code is shown once; the store keeps its hash. A
// scoped manager makes codes for a group of their scope only: the group
// given (ErrScopeExceeded for one outside it), or their only group when
// none is.
func (s *Service) CreateEnrollmentCode(ctx context.Context, by Principal, req NewCode) (string, storage.EnrollmentCode, error) {
	if req.TTL == 0 {
		req.TTL = DefaultCodeTTL
	}
	if req.MaxUses == 0 {
		req.MaxUses = 1
	}
	var errs []*tether.ValidationError
	if req.TTL < time.Minute || req.TTL > MaxCodeTTL {
		errs = append(errs, tether.Invalid("expiresIn", "expires_in_range", "expiresIn must be from 1m to 720h"))
	}
	if req.MaxUses < 1 || req.MaxUses > MaxCodeUses {
		errs = append(errs, tether.Invalid("maxUses", "max_uses_range", fmt.Sprintf("maxUses must be from 1 to %d", MaxCodeUses)))
	}
	req.Label, req.Group = strings.TrimSpace(req.Label), strings.TrimSpace(req.Group)
	if len([]rune(req.Label)) > device.MaxLabel || !tether.Printable(req.Label) {
		errs = append(errs, tether.Invalid("label", "label_length", "label must be at most 64 printable characters"))
	}
	if len([]rune(req.Group)) > device.MaxGroup || !tether.Printable(req.Group) {
		errs = append(errs, tether.Invalid("group", "group_length", "group must be at most 64 printable characters"))
	} else if g, err := device.ScopedGroup("group", req.Group, by.Scopes); err != nil {
		var verr *tether.ValidationError
		if !errors.As(err, &verr) {
			return "", storage.EnrollmentCode{}, err
		}
		errs = append(errs, verr)
	} else {
		req.Group = g
	}
	if all := tether.Join(errs...); all != nil {
		return "", storage.EnrollmentCode{}, all
	}
	raw := make([]byte, codeDigits)
	randRead(raw)
	var b strings.Builder
	for i, v := range raw {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(crockfordDigits[v&31])
	}
	code := b.String()
	now := s.now().UTC()
	rec := storage.EnrollmentCode{
		ID: storage.NewID(storage.PrefixCode), Hash: codeHash(normalizeCode(code)),
		Label: req.Label, Group: req.Group, MaxUses: req.MaxUses,
		ExpiresAt: now.Add(req.TTL), CreatedAt: now, CreatedBy: by.String(),
	}
	ev := s.event(ctx, "enrollment_code.create", "success")
	by.Stamp(&ev)
	ev.Detail, ev.Groups = map[string]string{"code": rec.ID}, storage.ScopeGroups([]string{rec.Group})
	if err := s.store.CreateEnrollmentCode(ctx, rec, storage.WithEvents(ev)); err != nil {
		return "", storage.EnrollmentCode{}, fmt.Errorf("create enrollment code: %w", err)
	}
	return code, rec, nil
}

// ListEnrollmentCodes returns every code in by's scope.
func (s *Service) ListEnrollmentCodes(ctx context.Context, by Principal) ([]storage.EnrollmentCode, error) {
	return s.store.ListEnrollmentCodes(ctx, storage.CodeFilter{Groups: by.Scopes})
}

// RevokeEnrollmentCode stops a code from enrolling any more handsets. A
// code outside by's scope is not found.
func (s *Service) RevokeEnrollmentCode(ctx context.Context, by Principal, id string) error {
	rec, err := s.store.GetEnrollmentCode(ctx, id)
	if err != nil {
		return err
	}
	ev := s.event(ctx, "enrollment_code.revoke", "success")
	by.Stamp(&ev)
	ev.Detail, ev.Groups = map[string]string{"code": id}, storage.ScopeGroups([]string{rec.Group})
	_, err = s.store.UpdateEnrollmentCode(ctx, id, func(c storage.EnrollmentCode) (storage.EnrollmentCode, error) {
		if !storage.CodeInScope(c, by.Scopes) {
			return c, fmt.Errorf("enrollment code %s out of scope: %w", id, storage.ErrNotFound)
		}
		if c.RevokedAt.IsZero() {
			c.RevokedAt = s.now().UTC()
		}
		return c, nil
	}, storage.WithEvents(ev))
	return err
}

// CodeUsable reports whether a code may enroll one more handset at t.
func CodeUsable(c storage.EnrollmentCode, t time.Time) bool {
	return c.RevokedAt.IsZero() && t.Before(c.ExpiresAt) && c.Uses < c.MaxUses
}

// Enroll lets a handset enroll itself with a code (enrollment modes code
// and open). A wrong code counts as a failed attempt from the client's
// address, like a wrong password.
func (s *Service) Enroll(ctx context.Context, code string, p device.Payload) (storage.Device, error) {
	ev := s.event(ctx, "device.enroll", "failure")
	fail := func(err error) (storage.Device, error) {
		ev.Reason = reasonOf(err)
		s.record(ctx, ev)
		return storage.Device{}, err
	}
	if s.cfg.EnrollmentMode == EnrollPreregistered {
		return fail(ErrSelfEnrollmentOff)
	}
	p.Normalize()
	if err := device.Validate(s.validate, p, "device.", true); err != nil {
		return storage.Device{}, err
	}
	if p.OSVersion.API < s.cfg.MinOSAPI {
		return fail(ErrOSVersion.With("minOsApi", s.cfg.MinOSAPI))
	}
	if s.minApp != nil {
		if v, err := device.ParseAppVersion(*p.AppVersion); err != nil || v.Compare(*s.minApp) < 0 {
			return fail(ErrAppVersion.With("minAppVersion", s.cfg.MinAppVersion))
		}
	}
	key, err := s.enrollKey(ctx, p)
	if err != nil {
		return fail(err)
	}
	// A wrong code counts against the address like a wrong password,
	// reserved before the code is looked up so guesses fired at once are
	// held back too.
	att, err := s.throttle.reserve(ctx, "", tether.OriginOf(ctx).IP, false)
	if err != nil {
		return fail(err)
	}
	now := s.now().UTC()
	d := storage.Device{
		ID: storage.NewID(storage.PrefixDevice), Status: storage.DeviceEnrolled,
		EnrolledAt: now, LastSeenAt: now, UpdatedAt: now, Key: key,
	}
	device.Apply(&d, p)
	ev.DeviceID = d.ID
	d, err = s.store.EnrollWithCode(ctx, codeHash(normalizeCode(code)), func(c storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error) {
		if !CodeUsable(c, now) {
			return c, d, ErrEnrollmentCode
		}
		c.Uses++
		enrolled := d.Clone()
		enrolled.Label, enrolled.Group, enrolled.EnrolledBy = c.Label, c.Group, "code:"+c.ID
		if enrolled.Key != nil {
			enrolled.Key.EnrolledBy = enrolled.EnrolledBy
		}
		return c, enrolled, nil
	}, storage.WithEvents(withOutcome(ev, "success")))
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, ErrEnrollmentCode) {
		return fail(ErrEnrollmentCode)
	}
	if terr := s.throttle.abandoned(ctx, att); terr != nil {
		s.log.ErrorContext(ctx, "enrollment throttle not updated", "error", terr)
	}
	if err != nil {
		return fail(err)
	}
	s.written(withOutcome(ev, "success"))
	return d, nil
}

// EnrollmentCodeFor returns the code record with the given id if code is
// its code, for showing the code again (as a QR image) to whoever holds it.
// Any mismatch is ErrNotFound, so ids cannot be probed with wrong codes.
// A code outside by's scope is not found either.
func (s *Service) EnrollmentCodeFor(ctx context.Context, by Principal, id, code string) (storage.EnrollmentCode, error) {
	rec, err := s.store.GetEnrollmentCode(ctx, id)
	if err != nil {
		return storage.EnrollmentCode{}, err
	}
	if subtle.ConstantTimeCompare(rec.Hash, codeHash(normalizeCode(code))) != 1 || !storage.CodeInScope(rec, by.Scopes) {
		return storage.EnrollmentCode{}, fmt.Errorf("enrollment code %s: %w", id, storage.ErrNotFound)
	}
	return rec, nil
}

// EnrollURL is what a handset scans to enroll: the server's enroll
// endpoint with the code, such as
// https://tether.example.com/v1/enroll?code=ABCD-EFGH-JKMN-PQRS. The app
// posts {code, device} to that endpoint.
func EnrollURL(serverURL, code string) string {
	return strings.TrimRight(serverURL, "/") + "/v1/enroll?code=" + url.QueryEscape(code)
}

// CodeWarning is something a manager should know about an enrollment code
// just made: the code is valid, but a handset may not manage to use it.
type CodeWarning struct {
	// Code is stable: self_enrollment_off or enroll_url_unreachable.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Setting names the server setting that changes it.
	Setting string `json:"setting,omitempty"`
}

// CodeWarnings says why a handset may fail to enroll with a code made now,
// whose enroll URL is enrollURL: self-enrollment is off
// (EnrollPreregistered), or the URL names this machine itself (localhost,
// a loopback or unspecified address), as one taken from a request to
// localhost does when the server has no public URL.
func (s *Service) CodeWarnings(enrollURL string) []CodeWarning {
	var out []CodeWarning
	if s.cfg.EnrollmentMode == EnrollPreregistered {
		out = append(out, CodeWarning{
			Code: "self_enrollment_off", Setting: "--enrollment-mode",
			Message: "self-enrollment is off on this server (enrollment mode preregistered): no handset can enroll with this code until the server runs with --enrollment-mode code",
		})
	}
	if host, ok := thisMachine(enrollURL); ok {
		out = append(out, CodeWarning{
			Code: "enroll_url_unreachable", Setting: "--public-url",
			Message: fmt.Sprintf("the enroll URL and its QR code point at %s, which a handset cannot reach (to it, that is the handset itself): set --public-url to the address handsets reach the server at", host),
		})
	}
	return out
}

// thisMachine reports whether a URL's host names the machine it is used
// on, and returns the host.
func thisMachine(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return u.Hostname(), true
	}
	ip, err := netip.ParseAddr(host)
	return u.Hostname(), err == nil && (ip.Unmap().IsLoopback() || ip.IsUnspecified())
}

// enrollKey reads the key a self-enrolling handset offers, under the
// policy: its attestation checked (and required, under
// Config.RequireAttestation), and a proof that the handset holds it. Under
// the required policy a handset must offer one.
func (s *Service) enrollKey(ctx context.Context, p device.Payload) (*storage.DeviceKey, error) {
	if s.cfg.DeviceProof == ProofOff {
		return nil, nil
	}
	if !p.OffersKey() {
		switch {
		case s.cfg.RequireAttestation:
			return nil, tether.Invalid("device.attestation", "attestation_required", "this server requires handsets to enroll a key with its Android key attestation")
		case s.cfg.DeviceProof == ProofRequired:
			return nil, tether.NewError(tether.CodeProofRequired, "this server requires every handset to enroll a key held in its secure hardware: send publicKey with a DPoP proof")
		}
		return nil, nil
	}
	key, err := s.offeredKey(ctx, p, "", "")
	if err != nil {
		return nil, err
	}
	if err := s.requireProof(ctx, key.Thumbprint, ""); err != nil {
		return nil, err
	}
	return key, nil
}
