package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clientAnswer is what a client program printed of the answer it got.
type clientAnswer struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Body   string `json:"body"`
	Error  string `json:"error"`
	Cause  string `json:"cause"`
}

// pythonWith returns a python3 that can import module, or "".
func pythonWith(module string) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	return ""
}

// TestOversizedBodyAnswerReachesClients is the upload over --body-limit
// sent by the clients people use, each still sending the body when the
// server refuses it from its Content-Length: Go's net/http, Node's fetch,
// Python's requests and urllib. Each must read the 413 and its problem,
// which names the limit, rather than a reset connection.
func TestOversizedBodyAnswerReachesClients(t *testing.T) {
	e := newEnv(t)
	url := e.url() + "/v1/auth/login"
	const size = 4 << 20 // 64 times the test server's limit
	check := func(t *testing.T, a clientAnswer) {
		t.Helper()
		if a.Error != "" {
			t.Fatalf("the client failed: %s (%s); want it to read the 413", a.Error, a.Cause)
		}
		var p map[string]any
		if a.Status != 413 || a.Type != "application/problem+json" || json.Unmarshal([]byte(a.Body), &p) != nil {
			t.Fatalf("answer %d %s %q; want 413 problem+json", a.Status, a.Type, a.Body)
		}
		if p["code"] != "payload_too_large" || !strings.Contains(p["detail"].(string), strconv.Itoa(bodyLimit)) {
			t.Fatalf("problem %v; want payload_too_large naming the limit", p)
		}
	}
	clients := map[string]func(t *testing.T) clientAnswer{
		"Go net/http": func(t *testing.T) clientAnswer {
			body := `{"username":"` + strings.Repeat("x", size) + `","password":"p"}`
			resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				return clientAnswer{Error: err.Error()}
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			return clientAnswer{Status: resp.StatusCode, Type: resp.Header.Get("Content-Type"), Body: string(data)}
		},
		"Node fetch": func(t *testing.T) clientAnswer {
			node, err := exec.LookPath("node")
			if err != nil {
				skipOrFail(t, "node is missing")
			}
			return runClient(t, node, filepath.Join("..", "testdata", "clients", "oversized.mjs"), url, strconv.Itoa(size))
		},
		"Python requests": func(t *testing.T) clientAnswer {
			py := pythonWith("requests")
			if py == "" {
				skipOrFail(t, "no python3 with requests (apt-get install python3-requests)")
			}
			return runClient(t, py, filepath.Join("..", "testdata", "clients", "oversized.py"), "requests", url, strconv.Itoa(size))
		},
		"Python urllib": func(t *testing.T) clientAnswer {
			py := pythonWith("urllib.request")
			if py == "" {
				skipOrFail(t, "python3 is missing")
			}
			return runClient(t, py, filepath.Join("..", "testdata", "clients", "oversized.py"), "urllib", url, strconv.Itoa(size))
		},
	}
	for name, send := range clients {
		t.Run(name, func(t *testing.T) {
			for range 3 { // a reset is a race: give it chances to show
				check(t, send(t))
			}
		})
	}
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run this: %s", why)
	}
	t.Skip(why)
}

func runClient(t *testing.T, prog string, args ...string) clientAnswer {
	t.Helper()
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", prog, args, err)
	}
	var a clientAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("%s printed %q: %v", prog, out, err)
	}
	return a
}
