package auth_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"tether/auth"
	"tether/storage"
)

// TestRenewalVouchedBySession: a renewal whose token the session issued
// needs no signature check, so everything else must refuse what a
// signature check would have: a token altered in any part, a forged one
// naming a real session, one whose signature was swapped, and a token of
// a session from before sessions kept the hash (which is then verified,
// renews, and is kept from then on).
func TestRenewalVouchedBySession(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	parts := strings.Split(g.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", g.AccessToken)
	}
	payload := mustDecode(t, parts[1])
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	forged := map[string]string{
		// The same claims, a later expiry: the signature no longer matches.
		"altered claims": parts[0] + "." + enc(strings.Replace(payload, `"exp":`, `"exp":1`, 1)) + "." + parts[2],
		// Unsigned, naming the real session.
		"alg none": enc(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".",
		// The real header and claims with another signature.
		"other signature": parts[0] + "." + parts[1] + "." + enc(strings.Repeat("x", 64)),
		// The real token with a byte appended to the signature.
		"padded signature": g.AccessToken + "A",
	}
	for name, tok := range forged {
		if _, err := w.svc.Renew(w.ctx, tok, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%s: %v; want token_invalid", name, err)
		}
	}
	// None of them touched the session: the real token renews.
	r1, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	if err != nil {
		t.Fatalf("the real token after the forgeries: %v", err)
	}
	// The renewed token renews in turn; the first, within the grace, gets
	// the same answer again.
	again, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	if err != nil || again.AccessToken != r1.AccessToken {
		t.Fatalf("the first token again within the grace: %v (same answer %v)", err, again.AccessToken == r1.AccessToken)
	}
	r2, err := w.svc.Renew(w.ctx, r1.AccessToken, w.phone.ID)
	if err != nil {
		t.Fatalf("the renewed token: %v", err)
	}
	// A session from before hashes were kept: its token is verified.
	if _, err := w.store.UpdateSession(w.ctx, r2.Session.ID, func(s storage.Session) (storage.Session, error) {
		s.AccessHash, s.PrevAccessHash = nil, nil
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	r3, err := w.svc.Renew(w.ctx, r2.AccessToken, w.phone.ID)
	if err != nil {
		t.Fatalf("a token of a session without its hash: %v", err)
	}
	sess, err := w.store.GetSession(w.ctx, r3.Session.ID)
	if err != nil || len(sess.AccessHash) != 32 {
		t.Fatalf("the hash kept after the renewal: %x, %v", sess.AccessHash, err)
	}
	if _, err := w.svc.Renew(w.ctx, forged["altered claims"], w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Errorf("an altered old token: %v", err)
	}
}

// TestRenewalRaceVouched: the same token renewed many times at once: one
// renewal happens, every other caller gets its very answer (the retry
// within the grace), and the session keeps the hash of that answer.
func TestRenewalRaceVouched(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	const n = 16
	answers := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
			if err != nil {
				t.Errorf("renewal %d: %v", i, err)
				return
			}
			answers[i] = r.AccessToken
		})
	}
	wg.Wait()
	for i, a := range answers {
		if a != answers[0] {
			t.Fatalf("renewal %d got another token", i)
		}
	}
	if _, err := w.svc.Renew(w.ctx, answers[0], w.phone.ID); err != nil {
		t.Fatalf("the one new token: %v", err)
	}
}
