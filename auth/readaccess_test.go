package auth

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/storage"
)

// TestReadAccessAsJWTReads: a renewal reads its token's claims with the
// stores' codec; for every kind of token Tether issues, in every
// algorithm, it reads what jwt's ParseUnverified reads, and it refuses
// what is not a signed token of an algorithm Tether signs with.
func TestReadAccessAsJWTReads(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for _, alg := range Algorithms() {
		svc, sess := benchmarkKeys(t, alg)
		keyed := sess
		keyed.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
		keyed.AMR = []string{"pwd", "otp"}
		client := sess
		client.ClientID, client.Scope, client.AuthTime = "fleet-app", "openid offline_access", now
		bare := storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: sess.UserID, DeviceName: `ws "7" \ é`}
		for name, s := range map[string]storage.Session{"handset": sess, "keyed": keyed, "client": client, "no handset": bare} {
			tok, err := svc.signAccess(s, storage.RoleWorker, "jti-"+name, now, now.Add(15*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAccess(tok)
			if err != nil {
				t.Fatalf("%s %s: %v", alg, name, err)
			}
			var want Claims
			parsed, _, err := jwt.NewParser().ParseUnverified(tok, &want)
			if err != nil {
				t.Fatal(err)
			}
			want.kid, _ = parsed.Header["kid"].(string)
			if want.kid == "" || !reflect.DeepEqual(*got, want) {
				t.Fatalf("%s %s: read %+v; jwt reads %+v", alg, name, *got, want)
			}
		}
	}
	svc, sess := benchmarkKeys(t, "EdDSA")
	tok, err := svc.signAccess(sess, storage.RoleWorker, "jti", now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	h, rest, _ := strings.Cut(tok, ".")
	p, sig, _ := strings.Cut(rest, ".")
	none := `eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0` // {"alg":"none","typ":"JWT"}
	hs256 := `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9`
	for name, bad := range map[string]string{
		"empty": "", "one segment": h, "two segments": h + "." + p, "header not base64": "!" + h[1:] + "." + p + "." + sig,
		"padded payload": h + "." + p + "==." + sig, "payload not JSON": h + ".bm90IGpzb24." + sig,
		"alg none": none + "." + p + ".", "alg HS256": hs256 + "." + p + "." + sig, "no sid": h + ".e30." + sig,
		"too long": h + "." + strings.Repeat("A", 4096) + "." + sig,
	} {
		if c, err := readAccess(bad); err == nil {
			t.Errorf("%s: read %+v; want it refused", name, c)
		}
	}
}
