package device

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"tether"
	"tether/storage"
)

// keyInvalid is the refusal of a handset key that is not a public P-256 or
// Ed25519 JWK.
func keyInvalid(why string) error {
	return tether.Invalid("publicKey", "public_key_invalid", "publicKey must be a public JWK, EC P-256 or Ed25519: "+why)
}

// PublicJWK is a handset's public key as a JSON Web Key: EC P-256 (kty EC)
// or Ed25519 (kty OKP).
type PublicJWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
}

// ParseJWK reads a public JWK and returns it in its canonical members with
// the Go key. Keys with private members, other curves, or points off the
// curve are refused.
func ParseJWK(raw []byte) (PublicJWK, crypto.PublicKey, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return PublicJWK{}, nil, keyInvalid("not a JSON object")
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := m[private]; ok {
			return PublicJWK{}, nil, keyInvalid(fmt.Sprintf("it holds the private member %q: send the public key only", private))
		}
	}
	var k PublicJWK
	if err := json.Unmarshal(raw, &k); err != nil {
		return PublicJWK{}, nil, keyInvalid(err.Error())
	}
	b64 := base64.RawURLEncoding
	switch {
	case k.Kty == "EC" && k.Crv == "P-256":
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return PublicJWK{}, nil, keyInvalid("x and y must be 32 bytes each, base64url")
		}
		// The uncompressed point, checked to be on the curve.
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return PublicJWK{}, nil, keyInvalid("the point is not on P-256")
		}
		return PublicJWK{Kty: "EC", Crv: "P-256", X: k.X, Y: k.Y}, pub, nil
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize || k.Y != "" {
			return PublicJWK{}, nil, keyInvalid("x must be 32 bytes, base64url")
		}
		return PublicJWK{Kty: "OKP", Crv: "Ed25519", X: k.X}, ed25519.PublicKey(x), nil
	}
	return PublicJWK{}, nil, keyInvalid(fmt.Sprintf("kty %q crv %q", k.Kty, k.Crv))
}

// JWKOf returns the public JWK of a P-256 or Ed25519 key.
func JWKOf(pub crypto.PublicKey) (PublicJWK, error) {
	b64 := base64.RawURLEncoding
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return PublicJWK{}, keyInvalid("not P-256")
		}
		raw, err := k.Bytes()
		if err != nil {
			return PublicJWK{}, err
		}
		return PublicJWK{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:])}, nil
	case ed25519.PublicKey:
		return PublicJWK{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	}
	return PublicJWK{}, keyInvalid(fmt.Sprintf("%T", pub))
}

// Thumbprint is the key's RFC 7638 thumbprint: the SHA-256 of its required
// members in lexicographic order, base64url.
func (k PublicJWK) Thumbprint() string {
	var canonical string
	if k.Kty == "EC" {
		canonical = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, k.Crv, k.Kty, k.X, k.Y)
	} else {
		canonical = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q}`, k.Crv, k.Kty, k.X)
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Alg is the JWS algorithm of proofs made with the key.
func (k PublicJWK) Alg() string {
	if k.Kty == "EC" {
		return "ES256"
	}
	return "EdDSA"
}

// KeyOf returns the device key record of a public JWK, enrolled by by at
// t.
func KeyOf(raw []byte, by string, t time.Time) (*storage.DeviceKey, crypto.PublicKey, error) {
	jwk, pub, err := ParseJWK(raw)
	if err != nil {
		return nil, nil, err
	}
	canonical, err := json.Marshal(jwk)
	if err != nil {
		return nil, nil, err
	}
	return &storage.DeviceKey{Thumbprint: jwk.Thumbprint(), JWK: canonical, EnrolledAt: t.UTC(), EnrolledBy: by}, pub, nil
}

// OffersKey reports whether a payload carries a public key.
func (p Payload) OffersKey() bool {
	return len(p.PublicKey) > 0 && string(p.PublicKey) != "null"
}
