package api_test

import (
	"testing"
)

// The hot handlers, through the whole Fiber app on a real store: time and
// allocations per request (make bench runs these with -benchmem). They go
// through app.Test, which adds its own connection per request, so compare
// them with each other and over time rather than with req/s of make bench.

func benchEnv(b *testing.B) (*env, map[string]any) {
	b.Helper()
	e := newEnv(b)
	e.fleet()
	tok := e.loginWorker()
	b.ReportAllocs()
	b.ResetTimer()
	return e, tok
}

func BenchmarkRenewHandler(b *testing.B) {
	e, tok := benchEnv(b)
	access, device := tok["accessToken"].(string), tok["deviceId"].(string)
	for b.Loop() {
		r := e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": device})
		if r.status != 200 {
			b.Fatalf("%d %s", r.status, r.body)
		}
		access = r.json(b)["accessToken"].(string)
	}
}

func BenchmarkRefreshHandler(b *testing.B) {
	e, tok := benchEnv(b)
	refresh, device := tok["refreshToken"].(string), tok["deviceId"].(string)
	for b.Loop() {
		r := e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": refresh, "deviceId": device})
		if r.status != 200 {
			b.Fatalf("%d %s", r.status, r.body)
		}
		refresh = r.json(b)["refreshToken"].(string)
	}
}

func BenchmarkMeHandler(b *testing.B) {
	e, tok := benchEnv(b)
	access := tok["accessToken"].(string)
	for b.Loop() {
		if r := e.do("GET", "/v1/auth/me", access, nil); r.status != 200 {
			b.Fatalf("%d %s", r.status, r.body)
		}
	}
}

func BenchmarkDeviceListHandler(b *testing.B) {
	e, _ := benchEnv(b)
	for b.Loop() {
		if r := e.do("GET", "/v1/devices?limit=50", e.manager, nil); r.status != 200 {
			b.Fatalf("%d %s", r.status, r.body)
		}
	}
}
