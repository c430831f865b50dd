package auth

import (
	"testing"
	"time"

	"tether/auth/dpop"
)

// BenchmarkVerifyProof is what checking one DPoP proof costs the server
// (signature, JWK, claims), without the replay cache.
func BenchmarkVerifyProof(b *testing.B) {
	for _, kind := range []string{"EC", "OKP"} {
		b.Run(kind, func(b *testing.B) {
			k, err := dpop.NewKey(kind)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			const url = "https://tether.example/v1/auth/renew"
			p, err := k.Proof("POST", url, "", dpop.Options{IssuedAt: now})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := verifyProof(Proof{JWT: p, Method: "POST", URL: url}, "", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
