package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"

	"tether"
	"tether/auth"
	"tether/storage"
)

const (
	rpID   = "tether.example.com"
	origin = "https://tether.example.com"
)

// passkeys serves passkeys at origin.
func passkeys(c *auth.Config) {
	c.WebAuthnRPID, c.WebAuthnOrigins = rpID, []string{origin}
}

// softKey is a passkey authenticator in software, as WebAuthn Level 3 and
// CTAP2 describe one: an ES256 key, a credential id, a signature counter,
// and the flags it sets. Tests make it answer wrongly on purpose.
type softKey struct {
	t      testing.TB
	id     []byte
	key    *ecdsa.PrivateKey
	count  uint32
	handle []byte
	// backup makes it a syncable passkey (BE and BS set).
	backup bool
}

func newSoftKey(t testing.TB) *softKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	rand.Read(id)
	return &softKey{t: t, id: id, key: key}
}

var b64 = base64.RawURLEncoding

// ceremony is what the answer of one ceremony is made of; zero values
// are the right ones.
type ceremony struct {
	origin, rpID string
	challenge    []byte
	// noUP leaves the user-present flag out.
	noUP bool
	// count, when set, is the signature counter sent.
	count uint32
}

func (k *softKey) flags(c ceremony, attested bool) byte {
	f := byte(0x04) // UV
	if !c.noUP {
		f |= 0x01
	}
	if k.backup {
		f |= 0x08 | 0x10
	}
	if attested {
		f |= 0x40
	}
	return f
}

func (k *softKey) authData(c ceremony, attested bool) []byte {
	rp := c.rpID
	if rp == "" {
		rp = rpID
	}
	h := sha256.Sum256([]byte(rp))
	out := append(h[:], k.flags(c, attested))
	count := c.count
	if count == 0 {
		k.count++
		count = k.count
	}
	out = binary.BigEndian.AppendUint32(out, count)
	if attested {
		x, y := k.key.X.FillBytes(make([]byte, 32)), k.key.Y.FillBytes(make([]byte, 32))
		cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
		if err != nil {
			k.t.Fatal(err)
		}
		out = append(out, make([]byte, 16)...) // AAGUID: none
		out = binary.BigEndian.AppendUint16(out, uint16(len(k.id)))
		out = append(append(out, k.id...), cose...)
	}
	return out
}

func clientData(typ string, c ceremony) []byte {
	o := c.origin
	if o == "" {
		o = origin
	}
	data, _ := json.Marshal(map[string]any{"type": typ, "challenge": b64.EncodeToString(c.challenge), "origin": o, "crossOrigin": false})
	return data
}

// create answers navigator.credentials.create() with a "none"
// attestation.
func (k *softKey) create(opts *protocol.CredentialCreation, c ceremony) []byte {
	k.t.Helper()
	if c.challenge == nil {
		c.challenge = opts.Response.Challenge
	}
	k.handle = opts.Response.User.ID.(protocol.URLEncodedBase64)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(c, true)})
	if err != nil {
		k.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(clientData("webauthn.create", c)), "attestationObject": b64.EncodeToString(att),
			"transports": []string{"internal"},
		},
	})
	return out
}

// get answers navigator.credentials.get().
func (k *softKey) get(opts *protocol.CredentialAssertion, c ceremony) []byte {
	k.t.Helper()
	if c.challenge == nil {
		c.challenge = opts.Response.Challenge
	}
	authData := k.authData(c, false)
	cd := clientData("webauthn.get", c)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(slices.Clone(authData), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(authData),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(k.handle),
		},
	})
	return out
}

// addPasskey registers k for the user behind id, after their password
// (or with code), and returns the recovery codes that came with it.
func (w *world) addPasskey(id auth.Identity, k *softKey, r auth.Reauth) []string {
	w.t.Helper()
	setup, err := w.svc.BeginPasskey(w.ctx, id, r, "laptop")
	if err != nil {
		w.t.Fatalf("begin passkey: %v", err)
	}
	_, codes, err := w.svc.ConfirmPasskey(w.ctx, id, k.create(setup.Options, ceremony{}))
	if err != nil {
		w.t.Fatalf("confirm passkey: %v", err)
	}
	return codes
}

// passkeyStep is the mfaToken of a sign-in of username, and its options.
func (w *world) passkeyStep(username string) (string, *protocol.CredentialAssertion) {
	w.t.Helper()
	_, err := w.signIn(username)
	tok := interrupted(w.t, err, auth.ErrMFARequired, "mfaToken")
	opts, err := w.svc.BeginPasskeyLogin(w.ctx, tok)
	if err != nil {
		w.t.Fatalf("begin passkey sign-in: %v", err)
	}
	return tok, opts
}

// TestPasskeySignIn: a manager registers a passkey after her password and
// gets recovery codes; her sign-ins then offer it (methods), and an
// answer signs her in with amr ["pwd","hwk"], once; the stored counter
// follows the authenticator's. A syncable passkey signs in with "swk".
// Asked twice, a step's options are the same; two steps' differ.
func TestPasskeySignIn(t *testing.T) {
	w := newWorld(t, passkeys)
	k := newSoftKey(t)
	id := w.identity("maria")
	codes := w.addPasskey(id, k, auth.Reauth{Password: password})
	if len(codes) != auth.RecoveryCodeCount {
		t.Fatalf("a first factor came with %d recovery codes", len(codes))
	}
	_, err := w.signIn("maria")
	var te *tether.Error
	if !errors.As(err, &te) || !slices.Equal(te.Extra["methods"].([]string), []string{"webauthn", "recovery"}) {
		t.Fatalf("the sign-in: %v; want mfa_required with methods webauthn, recovery", err)
	}
	tok, opts := w.passkeyStep("maria")
	again, err := w.svc.BeginPasskeyLogin(w.ctx, tok)
	if err != nil || !slices.Equal(again.Response.Challenge, opts.Response.Challenge) || opts.Response.RelyingPartyID != rpID ||
		len(opts.Response.AllowedCredentials) != 1 || !slices.Equal(opts.Response.AllowedCredentials[0].CredentialID, k.id) {
		t.Fatalf("the options asked twice: %+v, %+v, %v", opts.Response, again.Response, err)
	}
	answer := k.get(opts, ceremony{})
	g, err := w.svc.LoginPasskey(w.ctx, tok, answer)
	if err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd", "hwk"}) {
		t.Fatalf("the passkey's answer: %v, amr %v", err, g.Session.AMR)
	}
	if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("the step again: %v; want token_already_used", err)
	}
	u, err := w.store.GetUser(w.ctx, g.User.ID)
	if err != nil || u.MFA.Factors[0].WebAuthn.SignCount != k.count || u.MFA.Factors[0].LastUsedAt.IsZero() {
		t.Fatalf("stored counter %d; want %d (%v)", u.MFA.Factors[0].WebAuthn.SignCount, k.count, err)
	}
	if _, opts2 := w.passkeyStep("maria"); slices.Equal(opts2.Response.Challenge, opts.Response.Challenge) {
		t.Fatal("two steps have one challenge")
	}

	// A syncable passkey, as a second one: "swk".
	synced := newSoftKey(t)
	synced.backup = true
	w.addPasskey(id, synced, auth.Reauth{Code: codes[0]})
	tok, opts = w.passkeyStep("maria")
	if len(opts.Response.AllowedCredentials) != 2 {
		t.Fatalf("allowed credentials: %d; want 2", len(opts.Response.AllowedCredentials))
	}
	g, err = w.svc.LoginPasskey(w.ctx, tok, synced.get(opts, ceremony{}))
	if err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd", "swk"}) {
		t.Fatalf("a synced passkey: %v, amr %v", err, w.tokenAMR(g))
	}
	if n := len(w.events("user.mfa_enrolled")); n != 2 {
		t.Fatalf("%d user.mfa_enrolled events; want 2", n)
	}
}

// TestPasskeyRefusals: answers that do not fit are refused as
// ErrPasskeyWrong (counted, audited mfa_failed) and leave the step open:
// another origin, another relying party id, another step's challenge,
// another account's passkey, a bad signature, no user presence, a counter
// not above the last one; a malformed answer is the client's mistake. A
// step that expired, or whose password changed, is refused before any
// answer is read.
func TestPasskeyRefusals(t *testing.T) {
	w := newWorld(t, passkeys, func(c *auth.Config) { c.AccountFailures = 20 })
	k := newSoftKey(t)
	w.addPasskey(w.identity("maria"), k, auth.Reauth{Password: password})
	w.user("nora", storage.RoleManager)
	nk := newSoftKey(t)
	w.addPasskey(w.identity("nora"), nk, auth.Reauth{Password: password})
	noraTok, noraOpts := w.passkeyStep("nora")

	tok, opts := w.passkeyStep("maria")
	bad := k.get(opts, ceremony{})
	var doc map[string]any
	json.Unmarshal(bad, &doc)
	doc["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("not a signature"))
	badSig, _ := json.Marshal(doc)
	for name, answer := range map[string][]byte{
		"another origin":           k.get(opts, ceremony{origin: "https://tether.example.com.evil.test"}),
		"another relying party id": k.get(opts, ceremony{rpID: "evil.test"}),
		"another step's challenge": k.get(opts, ceremony{challenge: noraOpts.Response.Challenge}),
		"another account's key":    nk.get(opts, ceremony{}),
		"a bad signature":          badSig,
		"no user presence":         k.get(opts, ceremony{noUP: true}),
		"a counter gone backwards": k.get(opts, ceremony{count: 1}),
	} {
		if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); !errors.Is(err, auth.ErrPasskeyWrong) {
			t.Errorf("%s: %v; want ErrPasskeyWrong", name, err)
		}
	}
	if n := len(w.events("login")); n == 0 {
		t.Fatal("no login events")
	}
	failed := 0
	for _, e := range w.events("login") {
		if e.Reason == "mfa_failed" {
			failed++
		}
	}
	if failed != 7 {
		t.Fatalf("%d logins audited mfa_failed; want 7", failed)
	}
	for name, answer := range map[string][]byte{"not JSON": []byte("{"), "no response": []byte(`{"id":"AA","type":"public-key"}`), "empty": nil} {
		if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); codeOf(err) == tether.CodeInvalidCredentials || codeOf(err) == tether.CodeInternal {
			t.Errorf("%s: %v; want the client's mistake", name, err)
		}
	}
	// The step is still open: the right answer signs her in.
	if _, err := w.svc.LoginPasskey(w.ctx, tok, k.get(opts, ceremony{})); err != nil {
		t.Fatalf("the right answer after the wrong ones: %v", err)
	}
	// Nora's step took none of maria's answers either.
	if _, err := w.svc.LoginPasskey(w.ctx, noraTok, nk.get(noraOpts, ceremony{})); err != nil {
		t.Fatalf("nora's own answer: %v", err)
	}

	// An expired step, a step of a changed password.
	tok, opts = w.passkeyStep("maria")
	answer := k.get(opts, ceremony{})
	w.clock.Advance(6 * time.Minute)
	if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); codeOf(err) != tether.CodeTokenExpired {
		t.Fatalf("an expired step: %v; want token_expired", err)
	}
	tok, opts = w.passkeyStep("maria")
	answer = k.get(opts, ceremony{})
	if err := w.users.SetPassword(w.ctx, auth.CLI, w.boss.ID, "another long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); codeOf(err) != tether.CodeTokenInvalid {
		t.Fatalf("a step of the old password: %v; want token_invalid", err)
	}
}

// TestPasskeyAnswerUsedOnceUnderRace: one answer fired at once, many
// times, at its step signs in once.
func TestPasskeyAnswerUsedOnceUnderRace(t *testing.T) {
	w := newWorld(t, passkeys)
	k := newSoftKey(t)
	w.addPasskey(w.identity("maria"), k, auth.Reauth{Password: password})
	tok, opts := w.passkeyStep("maria")
	answer := k.get(opts, ceremony{})
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.svc.LoginPasskey(w.ctx, tok, answer); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d sign-ins with one answer; want 1", ok)
	}
}

// TestPasskeyRegistration: a registration is confirmed from the session
// that began it, within ten minutes, with an answer to its challenge for
// this relying party and origin; the same passkey twice is refused; a
// passkey-only account confirms changes with a passkey challenge of its
// session, once.
func TestPasskeyRegistration(t *testing.T) {
	w := newWorld(t, passkeys)
	id := w.identity("maria")
	k := newSoftKey(t)
	setup, err := w.svc.BeginPasskey(w.ctx, id, auth.Reauth{Password: password}, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if setup.Options.Response.RelyingParty.ID != rpID || setup.Options.Response.Attestation != protocol.PreferNoAttestation {
		t.Fatalf("the options: %+v", setup.Options.Response)
	}
	for name, answer := range map[string][]byte{
		"another challenge": k.create(setup.Options, ceremony{challenge: []byte("0123456789abcdef0123456789abcdef")}),
		"another origin":    k.create(setup.Options, ceremony{origin: "https://evil.test"}),
		"another rp id":     k.create(setup.Options, ceremony{rpID: "evil.test"}),
	} {
		if _, _, err := w.svc.ConfirmPasskey(w.ctx, id, answer); codeOf(err) != "credential_rejected" {
			t.Errorf("%s: %v; want credential_rejected", name, err)
		}
	}
	other := w.identity("maria")
	if _, _, err := w.svc.ConfirmPasskey(w.ctx, other, k.create(setup.Options, ceremony{})); codeOf(err) != tether.CodeConflict {
		t.Fatalf("confirmed from another session: %v; want conflict", err)
	}
	w.clock.Advance(11 * time.Minute)
	if _, _, err := w.svc.ConfirmPasskey(w.ctx, id, k.create(setup.Options, ceremony{})); codeOf(err) != tether.CodeConflict {
		t.Fatalf("confirmed after ten minutes: %v; want conflict", err)
	}
	id = w.identity("maria")
	spare := w.identity("maria")
	codes := w.addPasskey(id, k, auth.Reauth{Password: password})
	setup, err = w.svc.BeginPasskey(w.ctx, id, auth.Reauth{Code: codes[0]}, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(setup.Options.Response.CredentialExcludeList); n != 1 {
		t.Fatalf("%d credentials excluded; want the one registered", n)
	}
	if _, _, err := w.svc.ConfirmPasskey(w.ctx, id, k.create(setup.Options, ceremony{})); codeOf(err) != tether.CodeConflict {
		t.Fatalf("the same passkey again: %v; want conflict", err)
	}

	// Confirming a change with the passkey: the session's own challenge,
	// once.
	re, err := w.svc.BeginPasskeyReauth(w.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	answer := k.get(re.Options, ceremony{})
	if _, err := w.svc.RegenerateRecoveryCodes(w.ctx, spare, auth.Reauth{PasskeyToken: re.Token, Passkey: answer}); codeOf(err) != "passkey_token_invalid" {
		t.Fatalf("another session's challenge: %v; want passkey_token_invalid", err)
	}
	if _, err := w.svc.RegenerateRecoveryCodes(w.ctx, id, auth.Reauth{PasskeyToken: re.Token, Passkey: answer}); err != nil {
		t.Fatalf("the session's challenge: %v", err)
	}
	if _, err := w.svc.RegenerateRecoveryCodes(w.ctx, id, auth.Reauth{PasskeyToken: re.Token, Passkey: answer}); codeOf(err) != "passkey_token_invalid" {
		t.Fatalf("the challenge again: %v; want passkey_token_invalid", err)
	}
	re, err = w.svc.BeginPasskeyReauth(w.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.RegenerateRecoveryCodes(w.ctx, id, auth.Reauth{PasskeyToken: re.Token, Passkey: k.get(re.Options, ceremony{origin: "https://evil.test"})}); codeOf(err) != "credential_rejected" {
		t.Fatalf("a change confirmed from another origin: %v; want credential_rejected", err)
	}
}

// TestPasskeysOffWithoutRelyingParty: with no relying party id, every
// passkey call is ErrPasskeysOff; an id without an origin is refused at
// start.
func TestPasskeysOffWithoutRelyingParty(t *testing.T) {
	w := newWorld(t)
	id := w.identity("maria")
	if _, err := w.svc.BeginPasskey(w.ctx, id, auth.Reauth{Password: password}, ""); !errors.Is(err, auth.ErrPasskeysOff) {
		t.Fatalf("begin: %v", err)
	}
	if _, err := w.svc.BeginPasskeyReauth(w.ctx, id); !errors.Is(err, auth.ErrPasskeysOff) {
		t.Fatalf("reauth: %v", err)
	}
	if _, err := w.svc.LoginPasskey(w.ctx, "stp_x", []byte("{}")); !errors.Is(err, auth.ErrPasskeysOff) {
		t.Fatalf("login: %v", err)
	}
	cfg := auth.DefaultConfig()
	cfg.WebAuthnRPID = rpID
	if err := cfg.Validate(); err == nil {
		t.Fatal("a relying party id without origins passes")
	}
}

// TestPasskeyEnrollmentAtSignIn: an admin who must have a second factor
// may enroll a passkey at sign-in in place of an app (methods say so): a
// passkey begun after an app's setup replaces it (the app's code then
// confirms nothing), a wrong answer leaves the step open, the right one
// signs in with amr ["pwd","hwk"] and recovery codes, once; the next
// sign-in asks for the passkey.
func TestPasskeyEnrollmentAtSignIn(t *testing.T) {
	w := newWorld(t, passkeys)
	w.user("ada", storage.RoleAdmin)
	_, err := w.signIn("ada")
	var te *tether.Error
	if !errors.As(err, &te) || !slices.Equal(te.Extra["methods"].([]string), []string{"totp", "webauthn"}) {
		t.Fatalf("the enrollment: %v; want methods totp, webauthn", err)
	}
	tok := interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	app, err := w.svc.BeginEnrollment(w.ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := w.svc.BeginPasskeyEnrollment(w.ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.svc.LoginEnrolled(w.ctx, tok, rfc6238(t, app.Secret, w.clock.Now())); codeOf(err) != tether.CodeConflict {
		t.Fatalf("the app's code after a passkey was begun: %v; want conflict", err)
	}
	k := newSoftKey(t)
	if _, _, err := w.svc.LoginEnrolledPasskey(w.ctx, tok, k.create(setup.Options, ceremony{origin: "https://evil.test"})); codeOf(err) != "credential_rejected" {
		t.Fatalf("another origin: %v; want credential_rejected", err)
	}
	answer := k.create(setup.Options, ceremony{})
	g, codes, err := w.svc.LoginEnrolledPasskey(w.ctx, tok, answer)
	if err != nil || len(codes) != auth.RecoveryCodeCount || !slices.Equal(w.tokenAMR(g), []string{"pwd", "hwk"}) {
		t.Fatalf("enrolled with a passkey: %v, %d codes, amr %v", err, len(codes), w.tokenAMR(g))
	}
	if _, _, err := w.svc.LoginEnrolledPasskey(w.ctx, tok, answer); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("the step again: %v; want token_already_used", err)
	}
	if _, err := w.svc.BeginPasskeyEnrollment(w.ctx, tok); err == nil {
		t.Fatal("a spent enrollment step begins a passkey")
	}
	tok, opts := w.passkeyStep("ada")
	if _, err := w.svc.LoginPasskey(w.ctx, tok, k.get(opts, ceremony{})); err != nil {
		t.Fatalf("the next sign-in with the passkey: %v", err)
	}
}
