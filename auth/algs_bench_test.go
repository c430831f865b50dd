package auth_test

import (
	"testing"

	"tether/auth"
)

// BenchmarkRenewByAlgorithm is a renewal through the service, per
// --token-alg: verifying the presented token, reading the session, signing
// the new token and writing the session (one bbolt transaction with its
// fsync) with its audit event. Each renewal signs one token, so this is
// what the choice of algorithm costs the busiest path.
func BenchmarkRenewByAlgorithm(b *testing.B) {
	for _, alg := range auth.Algorithms() {
		b.Run(alg, func(b *testing.B) {
			w := newWorld(b, func(c *auth.Config) { c.TokenAlg = alg })
			g := w.mustLogin()
			tok := g.AccessToken
			for b.Loop() {
				next, err := w.svc.Renew(w.ctx, tok, w.phone.ID)
				if err != nil {
					b.Fatal(err)
				}
				tok = next.AccessToken
			}
		})
	}
}
