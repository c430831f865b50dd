package auth

import (
	"errors"
	"strings"
	"testing"
)

// cheap keeps tests fast; production uses DefaultParams.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

func TestHashVerify(t *testing.T) {
	h := NewHasher(cheap)
	hash, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not PHC argon2id with the parameters", hash)
	}
	if ok, err := h.Verify("correct horse battery staple", hash); !ok || err != nil {
		t.Fatalf("Verify(right) = %v, %v; want true", ok, err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", "Correct horse battery staple"} {
		if ok, err := h.Verify(wrong, hash); ok || err != nil {
			t.Fatalf("Verify(%q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	again, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if again == hash {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestVerifyUsesStoredParams(t *testing.T) {
	old := NewHasher(Params{Memory: 128, Time: 2, Threads: 1, KeyLen: 32, SaltLen: 16})
	hash, err := old.Hash("s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHasher(cheap)
	if ok, err := h.Verify("s3cret-pass", hash); !ok || err != nil {
		t.Fatalf("Verify with other current params = %v, %v; want true", ok, err)
	}
	if !h.NeedsRehash(hash) {
		t.Fatal("NeedsRehash = false for a hash with other params")
	}
	fresh, err := h.Hash("s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	if h.NeedsRehash(fresh) {
		t.Fatal("NeedsRehash = true for a hash with the current params")
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	h := NewHasher(cheap)
	for _, bad := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", // 4 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
		"$argon2id$v=19$m=64,t=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		ok, err := h.Verify("password", bad)
		if ok || !errors.Is(err, errMalformedHash) {
			t.Errorf("Verify against %q = %v, %v; want false, errMalformedHash", bad, ok, err)
		}
	}
}

// BenchmarkHashDefault is the cost of one production password hash, which
// bounds logins per second per core.
func BenchmarkHashDefault(b *testing.B) {
	h := NewHasher(DefaultParams)
	for b.Loop() {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoginUnknownUser and BenchmarkLoginWrongPassword measure the two
// refusals that must look the same: both cost one production hash.
// Compare their ns/op (make bench); they should match within noise.
func BenchmarkLoginUnknownUser(b *testing.B) { benchmarkRefusal(b, "nobody") }

func BenchmarkLoginWrongPassword(b *testing.B) { benchmarkRefusal(b, "walter") }
