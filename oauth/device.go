package oauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/storage"
)

// DeviceAuthorization is the answer of the device authorization endpoint
// (RFC 8628 section 3.2).
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// userCodeAlphabet has no vowels (no words) and no look-alikes, as RFC
// 8628 section 6.1 suggests: 20 letters, 8 of them about 34.5 bits.
const (
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
)

func newUserCode() string {
	b := make([]byte, userCodeLen)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(userCodeAlphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = userCodeAlphabet[n.Int64()]
	}
	return string(b)
}

// NormalizeUserCode is what a person typed, as stored: upper case, the
// separators and spaces dropped.
func NormalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FormatUserCode shows a user code as people read it: BCDF-GHJK.
func FormatUserCode(s string) string {
	if len(s) != userCodeLen {
		return s
	}
	return s[:4] + "-" + s[4:]
}

// AuthorizeDevice serves the device authorization endpoint: a handset
// without a keyboard (or a shared one) asks for a user code for a person
// to approve elsewhere. The handset payload (device) or its id (device_id)
// is kept for the approval, which admits the handset for that person.
func (p *Provider) AuthorizeDevice(ctx context.Context, ca ClientAuth) (DeviceAuthorization, error) {
	for name, v := range ca.Form {
		if len(v) > 1 {
			return DeviceAuthorization{}, oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	c, oe := p.authenticateClient(ctx, ca, p.Endpoint(PathDeviceAuthorization))
	if oe != nil {
		return DeviceAuthorization{}, oe
	}
	if !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		return DeviceAuthorization{}, oerr(CodeUnauthorizedClient, "the client may not use the device_code grant")
	}
	scope, oe := grantScope(c, ca.Form.Get("scope"))
	if oe != nil {
		return DeviceAuthorization{}, oe
	}
	rec := storage.DeviceCode{
		ID: storage.NewID(storage.PrefixDeviceCode), ClientID: c.ID, Scope: scope, Status: storage.DeviceCodePending,
		DeviceRef: ca.Form.Get("device_id"), Interval: int(p.cfg.DeviceInterval / time.Second),
	}
	if len(rec.DeviceRef) > 256 {
		return DeviceAuthorization{}, oerr(CodeInvalidRequest, "device_id is too long")
	}
	if raw := ca.Form.Get("device"); raw != "" {
		d, oe := parseDevice(raw)
		if oe != nil {
			return DeviceAuthorization{}, oe
		}
		rec.Device, _ = json.Marshal(d)
	}
	now := p.now().UTC()
	rec.CreatedAt, rec.ExpiresAt = now, now.Add(p.cfg.DeviceCodeTTL)
	code := newCode()
	rec.Hash = hashSecret(code)
	// A user code is unique among the live ones: draw again on the rare
	// collision.
	for try := 0; ; try++ {
		rec.UserCode = newUserCode()
		err := p.store.CreateDeviceCode(ctx, rec)
		var conflict *storage.ConflictError
		if err == nil {
			break
		}
		if !errors.As(err, &conflict) || try == 4 {
			return DeviceAuthorization{}, err
		}
	}
	verify := p.Endpoint(PathDevice)
	return DeviceAuthorization{
		DeviceCode: code, UserCode: FormatUserCode(rec.UserCode), VerificationURI: verify,
		VerificationURIComplete: verify + "?user_code=" + FormatUserCode(rec.UserCode),
		ExpiresIn:               int64(p.cfg.DeviceCodeTTL / time.Second), Interval: int64(rec.Interval),
	}, nil
}

// PendingDevice is what the verification page shows about a device
// authorization, so the person knows what they approve.
type PendingDevice struct {
	UserCode   string
	ClientName string
	Scope      string
	// Model and IMEI describe the handset from its payload, if it sent
	// one; DeviceRef is what it gave instead.
	Model     string
	IMEI      string
	DeviceRef string
	ExpiresAt time.Time
}

var errUserCode = tether.NewError(tether.CodeNotFound, "no sign-in is waiting for this code: check it, or start again on the handset")

// LookupDevice finds the live, pending device authorization of a user
// code, for the verification page.
func (p *Provider) LookupDevice(ctx context.Context, userCode string) (PendingDevice, error) {
	uc := NormalizeUserCode(userCode)
	if len(uc) != userCodeLen {
		return PendingDevice{}, errUserCode
	}
	var found storage.DeviceCode
	_, err := p.store.UpdateDeviceCodeByUserCode(ctx, uc, p.now(), func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		found = cur
		return cur, errLookOnly
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return PendingDevice{}, errUserCode
	case err != nil && !errors.Is(err, errLookOnly):
		return PendingDevice{}, err
	case found.Status != storage.DeviceCodePending:
		return PendingDevice{}, errUserCode
	}
	pd := PendingDevice{UserCode: FormatUserCode(found.UserCode), Scope: found.Scope, DeviceRef: found.DeviceRef, ExpiresAt: found.ExpiresAt}
	if c, err := p.store.GetOAuthClient(ctx, found.ClientID); err == nil {
		pd.ClientName = c.Name
		if pd.ClientName == "" {
			pd.ClientName = c.ID
		}
	}
	if d, _ := deviceOf(found); d != nil {
		pd.IMEI = d.IMEI
		if d.DeviceInfo != nil {
			pd.Model = strings.TrimSpace(d.DeviceInfo.Manufacturer + " " + d.DeviceInfo.Model)
		}
	}
	return pd, nil
}

// errLookOnly aborts an update that only reads.
var errLookOnly = errors.New("read only")

// ApproveDevice is the person's approval at the verification page: their
// password and the handset the device authorization named are checked as
// at a login (for this person: the handset must be theirs to use), and
// the handset's next poll gets the tokens.
func (p *Provider) ApproveDevice(ctx context.Context, userCode, username, password string) error {
	uc := NormalizeUserCode(userCode)
	pending, err := p.pendingDevice(ctx, uc)
	if err != nil {
		return err
	}
	dev, err := deviceOf(pending)
	if err != nil {
		return err
	}
	req := deviceSignIn(pending, dev)
	req.Username, req.Password = username, password
	in, err := p.auth.SignIn(ctx, req)
	if err != nil {
		return err
	}
	return p.approve(ctx, pending, in)
}

// deviceSignIn is the sign-in a device authorization asks for; the
// verification page takes a second step.
func deviceSignIn(pending storage.DeviceCode, dev *device.Payload) auth.LoginRequest {
	return auth.LoginRequest{
		Device: dev, DeviceRef: pending.DeviceRef, ClientID: pending.ClientID, Scope: pending.Scope,
		SecondFactor: true,
	}
}

// approve marks a device authorization approved by the person in.
func (p *Provider) approve(ctx context.Context, pending storage.DeviceCode, in auth.SignedIn) error {
	_, err := p.store.UpdateDeviceCode(ctx, pending.Hash, func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		if cur.Status != storage.DeviceCodePending || !p.now().Before(cur.ExpiresAt) {
			return cur, errUserCode
		}
		cur.Status, cur.UserID, cur.AuthTime, cur.AMR = storage.DeviceCodeApproved, in.User.ID, in.At, in.AMR
		return cur, nil
	})
	return err
}

// DeviceStep is the second step of an approval at the verification page
// that auth.ErrMFARequired or auth.ErrMFAEnrollment interrupted: Kind
// "mfa" (Token an mfaToken, Code a code), "enroll" (Token an
// enrollmentToken, Code the new app's first code: the answer has the
// recovery codes, and the approval waits for "resume") or "resume" (Token
// the resume token).
type DeviceStep struct {
	Kind, Token, Code string
}

// ApproveDeviceStep continues an approval with its second step; for an
// "enroll" step it returns the recovery codes and the resume token, and
// approves nothing yet.
func (p *Provider) ApproveDeviceStep(ctx context.Context, userCode string, st DeviceStep) (*auth.Enrolled, error) {
	pending, err := p.pendingDevice(ctx, NormalizeUserCode(userCode))
	if err != nil {
		return nil, err
	}
	dev, err := deviceOf(pending)
	if err != nil {
		return nil, err
	}
	req := deviceSignIn(pending, dev)
	var in auth.SignedIn
	switch st.Kind {
	case "mfa":
		in, err = p.auth.SignInSecondFactor(ctx, req, st.Token, st.Code)
	case "enroll":
		done, err := p.auth.SignInEnrolled(ctx, req, st.Token, st.Code)
		if err != nil {
			return nil, err
		}
		return &done, nil
	case "resume":
		in, err = p.auth.SignInResume(ctx, req, st.Token)
	default:
		return nil, oerr(CodeInvalidRequest, "unknown sign-in step")
	}
	if err != nil {
		return nil, err
	}
	return nil, p.approve(ctx, pending, in)
}

// DenyDevice is the person's refusal: the handset's next poll gets
// access_denied.
func (p *Provider) DenyDevice(ctx context.Context, userCode string) error {
	uc := NormalizeUserCode(userCode)
	if len(uc) != userCodeLen {
		return errUserCode
	}
	_, err := p.store.UpdateDeviceCodeByUserCode(ctx, uc, p.now(), func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		if cur.Status != storage.DeviceCodePending {
			return cur, errUserCode
		}
		cur.Status = storage.DeviceCodeDenied
		return cur, nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return errUserCode
	}
	return err
}

func (p *Provider) pendingDevice(ctx context.Context, uc string) (storage.DeviceCode, error) {
	if len(uc) != userCodeLen {
		return storage.DeviceCode{}, errUserCode
	}
	var found storage.DeviceCode
	_, err := p.store.UpdateDeviceCodeByUserCode(ctx, uc, p.now(), func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		found = cur
		return cur, errLookOnly
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return found, errUserCode
	case err != nil && !errors.Is(err, errLookOnly):
		return found, err
	case found.Status != storage.DeviceCodePending:
		return found, errUserCode
	}
	return found, nil
}

func deviceOf(rec storage.DeviceCode) (*device.Payload, error) {
	if len(rec.Device) == 0 {
		return nil, nil
	}
	var d device.Payload
	if err := json.Unmarshal(rec.Device, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// redeemDeviceCode is the device_code grant (RFC 8628 section 3.4): the
// handset polls until the person approved, denied, or the code expired.
// A poll sooner than the interval is told slow_down, and the interval
// grows by 5 seconds. The approved code is used up by the one poll that
// gets the tokens; if opening the session fails (a proof missing, the
// handset suspended meanwhile), the approval stands for the next poll.
func (p *Provider) redeemDeviceCode(ctx context.Context, c storage.OAuthClient, r TokenRequest) (Tokens, error) {
	code := r.Form.Get("device_code")
	if code == "" {
		return Tokens{}, oerr(CodeInvalidRequest, "device_code is missing")
	}
	if len(code) > 256 {
		return Tokens{}, oerr(CodeInvalidGrant, "the device code is not valid")
	}
	now := p.now()
	var verdict *Error
	rec, err := p.store.UpdateDeviceCode(ctx, hashSecret(code), func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		verdict = nil
		if cur.ClientID != c.ID {
			return cur, oerr(CodeInvalidGrant, "the device code is not valid")
		}
		if !now.Before(cur.ExpiresAt) {
			return cur, oerr(CodeExpiredToken, "the device code has expired: start again")
		}
		last := cur.LastPolledAt
		cur.LastPolledAt = now.UTC()
		if !last.IsZero() && now.Sub(last) < time.Duration(cur.Interval)*time.Second && cur.Status == storage.DeviceCodePending {
			cur.Interval += 5
			verdict = oerrf(CodeSlowDown, "poll every %d seconds", cur.Interval)
			return cur, nil
		}
		switch cur.Status {
		case storage.DeviceCodePending:
			verdict = oerr(CodeAuthorizationPending, "the person has not approved yet")
		case storage.DeviceCodeDenied:
			verdict = oerr(CodeAccessDenied, "the person declined")
		case storage.DeviceCodeUsed:
			verdict = oerr(CodeInvalidGrant, "the device code was used")
		case storage.DeviceCodeApproved:
			cur.Status = storage.DeviceCodeUsed
		}
		return cur, nil
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return Tokens{}, oerr(CodeInvalidGrant, "the device code is not valid")
	case err != nil:
		return Tokens{}, err
	case verdict != nil:
		return Tokens{}, verdict
	}
	dev, err := deviceOf(rec)
	if err != nil {
		return Tokens{}, err
	}
	g, err := p.auth.Open(ctx, rec.UserID, auth.LoginRequest{
		Device: dev, DeviceRef: rec.DeviceRef, ClientID: c.ID, Scope: rec.Scope, AuthTime: rec.AuthTime, AMR: rec.AMR,
		Persistent: hasScope(rec.Scope, ScopeOfflineAccess),
	})
	if err != nil {
		// Give the approval back for the next poll.
		if _, uerr := p.store.UpdateDeviceCode(ctx, rec.Hash, func(cur storage.DeviceCode) (storage.DeviceCode, error) {
			if cur.Status == storage.DeviceCodeUsed && cur.SessionID == "" {
				cur.Status = storage.DeviceCodeApproved
			}
			return cur, nil
		}); uerr != nil {
			p.log.ErrorContext(ctx, "give a device approval back", "error", uerr)
		}
		return Tokens{}, err
	}
	if _, err := p.store.UpdateDeviceCode(ctx, rec.Hash, func(cur storage.DeviceCode) (storage.DeviceCode, error) {
		cur.SessionID = g.Session.ID
		return cur, nil
	}); err != nil {
		p.revoke(ctx, g.Session.ID, "server_error")
		return Tokens{}, err
	}
	return p.tokens(ctx, c, g, "")
}
