// Package dpop makes what a handset sends for proof of possession (RFC
// 9449): a key pair standing in for the one in its secure hardware, its
// public JWK, and a DPoP proof per request. The load generator and the
// tests use it as a handset would; a Go client may too.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/device"
)

// Key is a handset key.
type Key struct {
	Signer crypto.Signer
	JWK    device.PublicJWK
	method jwt.SigningMethod
}

// NewKey makes a P-256 key (kind "EC") or an Ed25519 key (kind "OKP").
func NewKey(kind string) (Key, error) {
	var signer crypto.Signer
	var method jwt.SigningMethod
	switch kind {
	case "EC":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Key{}, err
		}
		signer, method = k, jwt.SigningMethodES256
	case "OKP":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return Key{}, err
		}
		signer, method = k, jwt.SigningMethodEdDSA
	default:
		return Key{}, fmt.Errorf("key kind %q: want EC or OKP", kind)
	}
	jwk, err := device.JWKOf(signer.Public())
	if err != nil {
		return Key{}, err
	}
	return Key{Signer: signer, JWK: jwk, method: method}, nil
}

// PublicJWK is the key's public JWK as JSON, for the device payload's
// publicKey.
func (k Key) PublicJWK() json.RawMessage {
	data, _ := json.Marshal(k.JWK)
	return data
}

// Thumbprint is the key's RFC 7638 thumbprint.
func (k Key) Thumbprint() string { return k.JWK.Thumbprint() }

// Options change a proof, for tests of what the server refuses.
type Options struct {
	// IssuedAt is the proof's iat; zero for now.
	IssuedAt time.Time
	// JTI is the proof's jti; empty for a new random one.
	JTI string
	// Nonce is a server nonce to include.
	Nonce string
	// Claims and Header, when set, change the claims and header last.
	Claims func(jwt.MapClaims)
	Header func(map[string]any)
}

// Proof makes a DPoP proof for a request: its method and URL, and the
// access token it carries in Authorization (empty for none).
func (k Key) Proof(method, url, accessToken string, opts ...Options) (string, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.IssuedAt.IsZero() {
		o.IssuedAt = time.Now()
	}
	if o.JTI == "" {
		b := make([]byte, 16)
		rand.Read(b)
		o.JTI = base64.RawURLEncoding.EncodeToString(b)
	}
	claims := jwt.MapClaims{"htm": method, "htu": url, "iat": o.IssuedAt.Unix(), "jti": o.JTI}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if o.Nonce != "" {
		claims["nonce"] = o.Nonce
	}
	if o.Claims != nil {
		o.Claims(claims)
	}
	t := jwt.NewWithClaims(k.method, claims)
	t.Header["typ"] = "dpop+jwt"
	t.Header["jwk"] = k.JWK
	if o.Header != nil {
		o.Header(t.Header)
	}
	return t.SignedString(k.Signer)
}
