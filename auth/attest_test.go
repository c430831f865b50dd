package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/auth/dpop"
)

// testCA stands in for Google's attestation root.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string, parent *testCA, notBefore, notAfter time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// attestation is what a test handset's keystore attests.
type attestation struct {
	challenge []byte
	level     int
	bootState int
	locked    bool
	imei      string
	serial    string
	noRoot    bool // no root of trust at all
}

// explicit wraps DER in an explicit context tag.
func explicit(t *testing.T, tag int, inner any) []byte {
	t.Helper()
	b, err := asn1.Marshal(inner)
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: b})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keyDescription(t *testing.T, a attestation) []byte {
	t.Helper()
	var members []byte
	if !a.noRoot {
		members = append(members, explicit(t, 704, struct {
			Key    []byte
			Locked bool
			State  asn1.Enumerated
			Hash   []byte
		}{make([]byte, 32), a.locked, asn1.Enumerated(a.bootState), make([]byte, 32)})...)
	}
	if a.serial != "" {
		members = append(members, explicit(t, 713, []byte(a.serial))...)
	}
	if a.imei != "" {
		members = append(members, explicit(t, 714, []byte(a.imei))...)
	}
	hw, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: members})
	if err != nil {
		t.Fatal(err)
	}
	empty, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true})
	der, err := asn1.Marshal(struct {
		AttestationVersion       int
		AttestationSecurityLevel asn1.Enumerated
		KeyMintVersion           int
		KeyMintSecurityLevel     asn1.Enumerated
		Challenge                []byte
		UniqueID                 []byte
		SoftwareEnforced         asn1.RawValue
		HardwareEnforced         asn1.RawValue
	}{300, asn1.Enumerated(a.level), 300, asn1.Enumerated(a.level), a.challenge, nil,
		asn1.RawValue{FullBytes: empty}, asn1.RawValue{FullBytes: hw}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// chain makes the attestation chain of k, leaf first, under intermediate.
func chain(t *testing.T, k dpop.Key, intermediate *testCA, a attestation, withExtension bool) []string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Android Keystore Key"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	if withExtension {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: auth.OIDKeyAttestation, Value: keyDescription(t, a)}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, intermediate.cert, k.Signer.Public(), intermediate.key)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return []string{b64(der), b64(intermediate.cert.Raw)}
}

func TestKeyAttestation(t *testing.T) {
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	root := newCA(t, "Test Attestation Root", nil, from, to)
	intermediate := newCA(t, "Test Attestation Batch", root, from, to)
	expired := newCA(t, "Expired Batch", root, from, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	foreign := newCA(t, "Someone's Root", nil, from, to)
	foreignBatch := newCA(t, "Someone's Batch", foreign, from, to)

	setup := func(t *testing.T, mutate ...func(*auth.Config)) (*world, *auth.Service) {
		w := newWorld(t, mutate...)
		cfg := auth.DefaultConfig()
		for _, m := range mutate {
			m(&cfg)
		}
		svc, err := auth.NewService(w.ctx, cfg, w.store, auth.NewHasher(cheap), validatorFor(t),
			auth.WithClock(w.clock.Now), auth.WithAttestationRoots([]*x509.Certificate{root.cert}))
		if err != nil {
			t.Fatal(err)
		}
		return w, svc
	}
	good := func(svc *auth.Service, w *world) attestation {
		c, _ := svc.Challenge()
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			t.Fatal(err)
		}
		return attestation{challenge: raw, level: 1, bootState: 0, locked: true, imei: w.phone.IMEI, serial: "R58N12ABCDE"}
	}
	login := func(w *world, svc *auth.Service, k dpop.Key, att []string) error {
		p := w.keyedPayload(k)
		p.Attestation = att
		_, err := svc.Login(w.prove(k, "POST", "/v1/auth/login", ""), auth.LoginRequest{Username: "walter", Password: password, Device: p})
		return err
	}

	t.Run("attested", func(t *testing.T) {
		w, svc := setup(t)
		k := newKey(t, "EC")
		a := good(svc, w)
		a.level = 2
		if err := login(w, svc, k, chain(t, k, intermediate, a, true)); err != nil {
			t.Fatalf("login with an attested key: %v", err)
		}
		d, _ := w.store.GetDevice(w.ctx, w.phone.ID)
		got := d.Key.Attestation
		if got == nil || got.SecurityLevel != "StrongBox" || got.VerifiedBootState != "Verified" || !got.DeviceLocked ||
			got.IMEI != w.phone.IMEI || got.Serial != "R58N12ABCDE" || got.Root != "CN=Test Attestation Root" {
			t.Fatalf("recorded attestation %+v", got)
		}
	})

	failures := map[string]struct {
		change func(*attestation)
		batch  *testCA
		noExt  bool
		other  bool // the chain attests another key
		code   string
	}{
		"wrong challenge":          {change: func(a *attestation) { a.challenge = []byte("a challenge we never issued, 40 bytes..") }, code: "attestation_challenge"},
		"software level":           {change: func(a *attestation) { a.level = 0 }, code: "attestation_software"},
		"unlocked boot":            {change: func(a *attestation) { a.locked = false }, code: "attestation_boot"},
		"unverified boot":          {change: func(a *attestation) { a.bootState = 2 }, code: "attestation_boot"},
		"no root of trust":         {change: func(a *attestation) { a.noRoot = true }, code: "attestation_boot"},
		"IMEI mismatch":            {change: func(a *attestation) { a.imei = "356938035643809" }, code: "attestation_imei"},
		"expired chain":            {batch: expired, code: "attestation_chain"},
		"foreign chain":            {batch: foreignBatch, code: "attestation_root"},
		"another key attested":     {other: true, code: "attestation_key"},
		"no attestation extension": {noExt: true, code: "attestation_malformed"},
	}
	for name, f := range failures {
		t.Run(name, func(t *testing.T) {
			w, svc := setup(t)
			k := newKey(t, "EC")
			a := good(svc, w)
			if f.change != nil {
				f.change(&a)
			}
			batch := intermediate
			if f.batch != nil {
				batch = f.batch
			}
			attested := k
			if f.other {
				attested = newKey(t, "EC")
			}
			err := login(w, svc, k, chain(t, attested, batch, a, !f.noExt))
			var ve *tether.ValidationError
			if !errors.As(err, &ve) || ve.Fields[0].Code != f.code {
				t.Fatalf("%v; want %s", err, f.code)
			}
			if d, _ := w.store.GetDevice(w.ctx, w.phone.ID); d.Key != nil {
				t.Fatal("a refused attestation left a key on the handset")
			}
		})
	}

	t.Run("the enrolled key offered again", func(t *testing.T) {
		w, svc := setup(t)
		k := newKey(t, "EC")
		att := chain(t, k, intermediate, good(svc, w), true)
		if err := login(w, svc, k, att); err != nil {
			t.Fatal(err)
		}
		// An app that sends its key and chain at every login goes on
		// logging in after the challenge has expired.
		w.clock.Advance(time.Hour)
		if err := login(w, svc, k, att); err != nil {
			t.Fatalf("the enrolled key and its old attestation again: %v", err)
		}
	})
	t.Run("challenge expires", func(t *testing.T) {
		w, svc := setup(t)
		k := newKey(t, "EC")
		a := good(svc, w)
		w.clock.Advance(11 * time.Minute)
		err := login(w, svc, k, chain(t, k, intermediate, a, true))
		var ve *tether.ValidationError
		if !errors.As(err, &ve) || ve.Fields[0].Code != "attestation_challenge" {
			t.Fatalf("an expired challenge: %v", err)
		}
	})

	t.Run("required", func(t *testing.T) {
		w, svc := setup(t, func(c *auth.Config) { c.RequireAttestation = true })
		k := newKey(t, "EC")
		err := login(w, svc, k, nil)
		var ve *tether.ValidationError
		if !errors.As(err, &ve) || ve.Fields[0].Code != "attestation_required" {
			t.Fatalf("a key without attestation under --require-attestation: %v", err)
		}
		if err := login(w, svc, k, chain(t, k, intermediate, good(svc, w), true)); err != nil {
			t.Fatalf("an attested key under --require-attestation: %v", err)
		}
	})
}

func TestGoogleRootsEmbedded(t *testing.T) {
	roots := auth.GoogleRoots()
	if len(roots) < 2 {
		t.Fatalf("%d embedded roots", len(roots))
	}
	for _, r := range roots {
		if err := r.CheckSignatureFrom(r); err != nil || !r.IsCA {
			t.Fatalf("root %s: %v", r.Subject, err)
		}
	}
}
