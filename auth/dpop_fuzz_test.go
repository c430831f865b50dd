package auth

import (
	"errors"
	"testing"
	"time"

	"tether/auth/dpop"
)

// FuzzProof feeds arbitrary DPoP headers to the proof check: nothing
// panics, and every refusal is proof_invalid.
func FuzzProof(f *testing.F) {
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	const url = "https://tether.example/v1/auth/renew"
	for _, kind := range []string{"EC", "OKP"} {
		k, err := dpop.NewKey(kind)
		if err != nil {
			f.Fatal(err)
		}
		p, err := k.Proof("POST", url, "", dpop.Options{IssuedAt: now})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		_, err := verifyProof(Proof{JWT: proof, Method: "POST", URL: url}, "", now)
		if err != nil && !errors.Is(err, ErrProofInvalid) {
			t.Fatalf("verifyProof(%q): %v is not proof_invalid", proof, err)
		}
	})
}
