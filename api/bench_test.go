package api_test

import (
	"bytes"
	"fmt"
	"testing"

	"tether/device"
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

// BenchmarkDeviceListPage is a full page: 50 handsets, each assigned to a
// user of its own, as a fleet's are.
func BenchmarkDeviceListPage(b *testing.B) {
	e := devicePageEnv(b)
	for b.Loop() {
		r := e.do("GET", "/v1/devices?limit=50", e.manager, nil)
		if r.status != 200 || len(r.json(b)["items"].([]any)) != 50 {
			b.Fatalf("%d %.200s", r.status, r.body)
		}
	}
}

// BenchmarkDeviceListPageServed is BenchmarkDeviceListPage without the
// client's decoding of each answer into maps, which costs about as much as
// serving it: what the server does, and app.Test's connection.
func BenchmarkDeviceListPageServed(b *testing.B) {
	e := devicePageEnv(b)
	for b.Loop() {
		r := e.do("GET", "/v1/devices?limit=50", e.manager, nil)
		if r.status != 200 || bytes.Count(r.body, []byte(`"imei":`)) != 50 {
			b.Fatalf("%d %.200s", r.status, r.body)
		}
	}
}

// devicePageEnv is a store with 50 handsets, each assigned to a user of
// its own.
func devicePageEnv(b *testing.B) *env {
	e := newEnv(b)
	for i := range 50 {
		name := fmt.Sprintf("worker%02d", i)
		if r := e.do("POST", "/v1/users", e.manager, map[string]any{"username": name, "password": "correct horse"}); r.status != 201 {
			b.Fatalf("user: %d %s", r.status, r.body)
		}
		body := fmt.Sprintf("35%012d", i)
		imei := body + string(device.LuhnDigit(body))
		if r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": imei, "assignedUsers": []string{name}, "label": "van " + name, "group": "north"}); r.status != 201 {
			b.Fatalf("device: %d %s", r.status, r.body)
		}
	}
	b.ReportAllocs()
	return e
}
