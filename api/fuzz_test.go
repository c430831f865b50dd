package api

import (
	"encoding/xml"
	"errors"
	"testing"

	"tether"
)

// FuzzLowerXML feeds arbitrary bytes to the dialects' XML reading: nothing
// panics, DOCTYPEs are refused, and what it accepts is well-formed XML a
// struct can be read from.
func FuzzLowerXML(f *testing.F) {
	for _, seed := range []string{
		`<UserCredentialModel><UserName>walter</UserName><IccIds><string>1</string></IccIds></UserCredentialModel>`,
		`<Login xmlns="http://x" xmlns:i="http://y"><AccessToken i:nil="true"/></Login>`,
		`<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>`,
		`<?xml version="1.0"?><!-- c --><a><b>&amp;&lt;</b></a>`,
		`<a><b></a>`, ``, `<`, `<a>` + string(rune(0xfffe)) + `</a>`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := lowerXML(data)
		if err != nil {
			var te *tether.Error
			if !errors.As(err, &te) || te.Code != tether.CodeInvalidRequest {
				t.Fatalf("lowerXML error %v is not a clean refusal", err)
			}
			return
		}
		var v userCredentialModel
		_ = xml.Unmarshal(out, &v) // may refuse; must not panic
	})
}

// FuzzNegotiate feeds arbitrary Accept headers: a format or a 406, never a
// panic.
func FuzzNegotiate(f *testing.F) {
	for _, seed := range []string{"", "*/*", "text/csv;q=0.5, application/xml", "a/b;q=x", ";;;", "application/json;q=1.5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		_, ct, err := negotiate(accept)
		if err == nil && ct == "" {
			t.Fatalf("negotiate(%q) chose no content type", accept)
		}
	})
}
