package auth

import (
	"strings"
	"testing"
	"time"
)

// TestTOTPVectorsRFC6238: the SHA-1 vectors of RFC 6238 Appendix B (their
// last six digits: the code of a 6-digit TOTP), through the code maker
// and the checker.
func TestTOTPVectorsRFC6238(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, v := range []struct {
		unix int64
		code string
	}{
		{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
	} {
		at := time.Unix(v.unix, 0)
		want := v.code[2:]
		got, err := TOTPCode(secret, at)
		if err != nil || got != want {
			t.Errorf("TOTPCode at %d = %q, %v; want %q", v.unix, got, err, want)
		}
		step, ok := matchTOTP(secret, want, at, 0)
		if !ok || step != v.unix/30 {
			t.Errorf("matchTOTP(%q) at %d = %d, %v; want step %d", want, v.unix, step, ok, v.unix/30)
		}
	}
}

// TestTOTPSkewAndReplay: the code of the step before or after the
// server's passes, two steps off does not; a code of the last accepted
// step, or an earlier one, is refused.
func TestTOTPSkewAndReplay(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_800_000_015, 0)
	cur := now.Unix() / 30
	for off, want := range map[int64]bool{-2: false, -1: true, 0: true, 1: true, 2: false} {
		code, err := TOTPCode(secret, time.Unix((cur+off)*30, 0))
		if err != nil {
			t.Fatal(err)
		}
		step, ok := matchTOTP(secret, code, now, 0)
		if ok != want || (ok && step != cur+off) {
			t.Errorf("code of step %+d: %d, %v; want %v", off, step, ok, want)
		}
	}
	code, _ := TOTPCode(secret, now)
	if _, ok := matchTOTP(secret, code, now, cur); ok {
		t.Error("a code of the last accepted step passed")
	}
	if _, ok := matchTOTP(secret, code, now, cur+1); ok {
		t.Error("a code of a step before the last accepted one passed")
	}
	if _, ok := matchTOTP(secret, code, now, cur-1); !ok {
		t.Error("a code of a step after the last accepted one was refused")
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", " 123456", "１２３４５６"} {
		if _, ok := matchTOTP(secret, bad, now, 0); ok {
			t.Errorf("%q passed", bad)
		}
	}
}

// TestRecoveryCodes: ten codes, unlike one another, of 80 random bits in
// Crockford's base32, each read back however a person types it; only
// their hashes are kept.
func TestRecoveryCodes(t *testing.T) {
	codes, hashes := newRecoveryCodes()
	if len(codes) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %d hashes; want %d", len(codes), len(hashes), RecoveryCodeCount)
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if len(c) != 19 || strings.Count(c, "-") != 3 || seen[c] {
			t.Fatalf("code %q: want xxxx-xxxx-xxxx-xxxx, each new", c)
		}
		seen[c] = true
		for _, typed := range []string{c, strings.ToUpper(c), strings.ReplaceAll(c, "-", ""), strings.ReplaceAll(c, "-", " "), " " + c + " "} {
			if got := matchRecovery(hashes, typed); got != i {
				t.Errorf("%q typed as %q: index %d; want %d", c, typed, got, i)
			}
		}
		if strings.Contains(string(hashes[i]), strings.ReplaceAll(c, "-", "")) {
			t.Fatal("a hash holds its code")
		}
	}
	// O is 0, I and L are 1, as Crockford's base32 reads them.
	n, ok := normalizeRecovery("OIL0-0000-0000-0000")
	if !ok || n != "0110000000000000" {
		t.Errorf("normalize OIL0…: %q, %v", n, ok)
	}
	for _, bad := range []string{"", "abcd", "abcd-efgh-jkmn-pqr", "abcd-efgh-jkmn-pqrst", "abcd-efgh-jkmn-pqru"} {
		if matchRecovery(hashes, bad) >= 0 {
			t.Errorf("%q matched", bad)
		}
	}
}
