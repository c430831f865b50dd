package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
)

// Android key attestation (https://source.android.com/docs/security/features/keystore/attestation):
// the leaf certificate of the chain a handset's keystore makes for a key
// carries, in extension 1.3.6.1.4.1.11129.2.1.17, a KeyDescription saying
// where the key lives, the challenge the app asked to be attested, and the
// handset's boot state and identifiers; the chain ends at Google's root.

//go:embed attestation_roots.pem
var googleRootsPEM []byte

// OIDKeyAttestation is the extension of an Android key attestation.
var OIDKeyAttestation = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 17}

// Security levels and verified-boot states of KeyDescription.
const (
	levelSoftware   = 0
	levelTEE        = 1
	levelStrongBox  = 2
	bootVerified    = 0
	bootSelfSigned  = 1
	bootUnverified  = 2
	bootFailed      = 3
	maxChain        = 8
	challengeTTL    = 10 * time.Minute
	challengeRandom = 16
	challengeMAC    = 16
)

// Tags of the AuthorizationList members read here.
const (
	tagRootOfTrust      = 704
	tagAttestationIDSN  = 713
	tagAttestationIMEI  = 714
	tagAttestationIMEI2 = 723
)

// keyDescription is the attestation extension's value.
type keyDescription struct {
	AttestationVersion       int
	AttestationSecurityLevel asn1.Enumerated
	KeyMintVersion           int
	KeyMintSecurityLevel     asn1.Enumerated
	AttestationChallenge     []byte
	UniqueID                 []byte
	SoftwareEnforced         asn1.RawValue
	HardwareEnforced         asn1.RawValue
}

// rootOfTrust is what the handset's bootloader says of the running system.
type rootOfTrust struct {
	VerifiedBootKey   []byte
	DeviceLocked      bool
	VerifiedBootState asn1.Enumerated
	VerifiedBootHash  []byte `asn1:"optional"`
}

// ParseRoots reads PEM certificates, such as an --attestation-roots file.
func ParseRoots(data []byte) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("attestation root: %w", err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, errors.New("no certificate in the attestation roots")
	}
	return roots, nil
}

// GoogleRoots are the embedded roots of Android hardware key attestation.
func GoogleRoots() []*x509.Certificate {
	roots, err := ParseRoots(googleRootsPEM)
	if err != nil {
		panic(err) // embedded at build time: a failure is a bug
	}
	return roots
}

// WithAttestationRoots replaces the roots attestation chains must end at.
func WithAttestationRoots(roots []*x509.Certificate) ServiceOption {
	return func(s *Service) { s.roots = roots }
}

func attestationError(code, format string, args ...any) error {
	return tether.Invalid("device.attestation", code, fmt.Sprintf(format, args...))
}

// Challenge issues an attestation challenge: what the app passes to
// KeyGenParameterSpec.Builder.setAttestationChallenge when it makes its
// key. It is good for ten minutes on every instance sharing the signing
// keys, and holds nothing to look up: its expiry, randomness, and a MAC
// under a key derived from the active signing key.
func (s *Service) Challenge() (string, time.Time) {
	exp := s.now().Add(challengeTTL).Truncate(time.Second)
	c := make([]byte, 8+challengeRandom, 8+challengeRandom+challengeMAC)
	binary.BigEndian.PutUint64(c, uint64(exp.Unix()))
	rand.Read(c[8:])
	c = append(c, s.keys.challengeMAC(s.keys.activeSeed(), c)...)
	return base64.RawURLEncoding.EncodeToString(c), exp
}

// checkChallenge reports whether c is a challenge this server issued that
// has not expired.
func (s *Service) checkChallenge(c []byte) bool {
	if len(c) != 8+challengeRandom+challengeMAC {
		return false
	}
	body, mac := c[:8+challengeRandom], c[8+challengeRandom:]
	if time.Unix(int64(binary.BigEndian.Uint64(body)), 0).Before(s.now()) {
		return false
	}
	for _, seed := range s.keys.seeds() {
		if hmac.Equal(mac, s.keys.challengeMAC(seed, body)) {
			return true
		}
	}
	return false
}

// attest checks the Android key attestation a payload carries for the key
// pub, and returns what it showed; nil when there is none (refused under
// Config.RequireAttestation).
func (s *Service) attest(_ context.Context, p device.Payload, pub crypto.PublicKey) (*storage.Attestation, error) {
	if len(p.Attestation) == 0 {
		if s.cfg.RequireAttestation {
			return nil, attestationError("attestation_required", "this server requires the key's Android key attestation chain")
		}
		return nil, nil
	}
	if len(p.Attestation) > maxChain {
		return nil, attestationError("attestation_chain", "the chain has more than %d certificates", maxChain)
	}
	chain := make([]*x509.Certificate, len(p.Attestation))
	for i, b64 := range p.Attestation {
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			if der, err = base64.RawURLEncoding.DecodeString(b64); err != nil {
				return nil, attestationError("attestation_chain", "certificate %d is not base64", i)
			}
		}
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, attestationError("attestation_chain", "certificate %d is not an X.509 certificate", i)
		}
	}
	root, err := s.verifyChain(chain)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !samePublicKey(leaf.PublicKey, pub) {
		return nil, attestationError("attestation_key", "the attested key is not publicKey")
	}
	var desc keyDescription
	var found bool
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(OIDKeyAttestation) {
			if rest, err := asn1.Unmarshal(ext.Value, &desc); err != nil || len(rest) > 0 {
				return nil, attestationError("attestation_malformed", "the key description cannot be read")
			}
			found = true
		}
	}
	if !found {
		return nil, attestationError("attestation_malformed", "the leaf certificate has no key attestation extension")
	}
	if !s.checkChallenge(desc.AttestationChallenge) {
		return nil, attestationError("attestation_challenge", "the attestation challenge is not one this server issued in the last %s (POST /v1/enroll/challenge)", challengeTTL)
	}
	a := &storage.Attestation{Root: root.Subject.String(), AttestedAt: s.now().UTC()}
	switch desc.AttestationSecurityLevel {
	case levelTEE:
		a.SecurityLevel = "TrustedEnvironment"
	case levelStrongBox:
		a.SecurityLevel = "StrongBox"
	default:
		return nil, attestationError("attestation_software", "the key is kept in software, not in secure hardware")
	}
	hw, err := authorizations(desc.HardwareEnforced)
	if err != nil {
		return nil, attestationError("attestation_malformed", "the hardware-enforced authorizations cannot be read")
	}
	rawRoot, ok := hw[tagRootOfTrust]
	var rot rootOfTrust
	if !ok {
		return nil, attestationError("attestation_boot", "the attestation has no root of trust")
	}
	if rest, err := asn1.Unmarshal(rawRoot, &rot); err != nil || len(rest) > 0 {
		return nil, attestationError("attestation_malformed", "the root of trust cannot be read")
	}
	a.DeviceLocked = rot.DeviceLocked
	a.VerifiedBootState = map[asn1.Enumerated]string{
		bootVerified: "Verified", bootSelfSigned: "SelfSigned", bootUnverified: "Unverified", bootFailed: "Failed",
	}[rot.VerifiedBootState]
	if rot.VerifiedBootState != bootVerified || !rot.DeviceLocked {
		return nil, attestationError("attestation_boot", "the handset's bootloader is unlocked or its system is not its maker's (verified boot %s)", a.VerifiedBootState)
	}
	imeis := [][]byte{}
	for _, tag := range []int{tagAttestationIMEI, tagAttestationIMEI2} {
		if raw, ok := hw[tag]; ok {
			var v []byte
			if _, err := asn1.Unmarshal(raw, &v); err != nil {
				return nil, attestationError("attestation_malformed", "the attested IMEI cannot be read")
			}
			imeis = append(imeis, v)
		}
	}
	if len(imeis) > 0 {
		match := false
		for _, v := range imeis {
			if string(v) == p.IMEI {
				match, a.IMEI = true, string(v)
			}
		}
		if !match {
			return nil, attestationError("attestation_imei", "the attested IMEI is not the handset's")
		}
	}
	if raw, ok := hw[tagAttestationIDSN]; ok {
		var v []byte
		if _, err := asn1.Unmarshal(raw, &v); err == nil {
			a.Serial = string(v)
		}
	}
	return a, nil
}

// verifyChain checks that each certificate is signed by the next and is
// within its validity, and that the chain ends at a trusted root (the root
// itself, or a certificate signed by one). It returns the root.
func (s *Service) verifyChain(chain []*x509.Certificate) (*x509.Certificate, error) {
	now := s.now()
	for i, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, attestationError("attestation_chain", "certificate %d (%s) is not valid now", i, c.Subject)
		}
		if i+1 < len(chain) {
			if err := c.CheckSignatureFrom(chain[i+1]); err != nil {
				return nil, attestationError("attestation_chain", "certificate %d is not signed by certificate %d", i, i+1)
			}
		}
	}
	last := chain[len(chain)-1]
	for _, root := range s.roots {
		if bytes.Equal(last.Raw, root.Raw) {
			return root, nil
		}
		if bytes.Equal(last.RawIssuer, root.RawSubject) && last.CheckSignatureFrom(root) == nil {
			if now.After(root.NotAfter) {
				return nil, attestationError("attestation_chain", "the root %s has expired", root.Subject)
			}
			return root, nil
		}
	}
	return nil, attestationError("attestation_root", "the chain does not end at a trusted attestation root")
}

// authorizations reads an AuthorizationList: a SEQUENCE of explicitly
// tagged members, by tag, each its inner value's encoding.
func authorizations(list asn1.RawValue) (map[int][]byte, error) {
	out := map[int][]byte{}
	rest := list.Bytes
	for len(rest) > 0 {
		var member asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &member); err != nil {
			return nil, err
		}
		if member.Class == asn1.ClassContextSpecific {
			out[member.Tag] = member.Bytes
		}
	}
	return out, nil
}

// samePublicKey compares two public keys.
func samePublicKey(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// challengeMAC is the MAC of a challenge's body under a key derived from
// a signing key's seed.
func (k *KeySet) challengeMAC(seed, body []byte) []byte {
	key := sha256.Sum256(append([]byte("tether attestation challenge\x00"), seed...))
	m := hmac.New(sha256.New, key[:])
	m.Write(body)
	return m.Sum(nil)[:challengeMAC]
}
