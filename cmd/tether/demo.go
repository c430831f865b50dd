package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"

	"tether/auth"
	"tether/device"
	"tether/storage"
)

// demo is what tether serve --demo seeds a temporary store with.
type demo struct {
	managerPassword string
	workerPassword  string
	apiKey          string
	code            string
}

// demo handsets: three registered, one more that enrolls itself.
var (
	demoIMEIs  = []string{"490154203237518", "356938035643809", "352099001761481"}
	demoNewOne = "359881234567899"
)

// demoPassword makes a password that is easy to paste and hard to guess.
func demoPassword() string {
	return "demo-" + strings.ToLower(rand.Text()[:12])
}

// seedDemo fills a new store: a manager, two workers, three handsets, a
// manager API key and an enrollment code.
func seedDemo(ctx context.Context, svc *services, a *auth.Service) (demo, error) {
	d := demo{managerPassword: demoPassword(), workerPassword: demoPassword()}
	users := []auth.NewUser{
		{Username: "maria", Password: d.managerPassword, Role: storage.RoleManager, FirstName: "Maria", LastName: "Lopez"},
		{Username: "walter", Password: d.workerPassword, Role: storage.RoleWorker, FirstName: "Walter"},
		{Username: "jesse", Password: d.workerPassword, Role: storage.RoleWorker, FirstName: "Jesse"},
	}
	for _, u := range users {
		if _, err := svc.users.Create(ctx, auth.CLI, u); err != nil {
			return d, fmt.Errorf("demo user %s: %w", u.Username, err)
		}
	}
	for i, imei := range demoIMEIs {
		r := device.Registration{Payload: device.Payload{IMEI: imei}, Label: fmt.Sprintf("Van %d", i+1), Group: "demo"}
		if i == 0 {
			r.AssignedUsers = []string{"walter"}
		}
		if _, err := svc.devices.Register(ctx, auth.CLI.Device(), r); err != nil {
			return d, fmt.Errorf("demo handset %s: %w", imei, err)
		}
	}
	var err error
	if d.apiKey, _, err = svc.apiKeys.Create(ctx, auth.CLI, storage.RoleManager, "demo"); err != nil {
		return d, err
	}
	if d.code, _, err = a.CreateEnrollmentCode(ctx, auth.CLI, auth.NewCode{Label: "Van 4", Group: "demo", MaxUses: 5}); err != nil {
		return d, err
	}
	return d, nil
}

func demoPayload(imei string) string {
	p := map[string]any{
		"imei": imei, "hasIccCard": true, "iccIds": []string{"89445001021983048261"},
		"osVersion":  map[string]any{"api": 34, "name": "14"},
		"deviceInfo": map[string]any{"manufacturer": "samsung", "model": "SM-G991B"},
		"appVersion": "3.2.1",
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a constant value: cannot fail
	}
	return string(b)
}

// printDemo writes the ready-to-paste walk-through for a demo server at base.
func printDemo(w io.Writer, base string, d demo) {
	login, err := json.Marshal(map[string]any{"username": "walter", "password": d.workerPassword, "persistent": true, "device": json.RawMessage(demoPayload(demoIMEIs[0]))})
	if err != nil {
		panic(err)
	}
	enroll, err := json.Marshal(map[string]any{"code": d.code, "device": json.RawMessage(demoPayload(demoNewOne))})
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(w, `# Tether demo. The store is temporary: it is deleted when the server stops.
#   manager maria, password %[2]s (console: %[1]s/console)
#   workers walter and jesse, password %[3]s
#   handsets %[4]s (assigned to walter), %[5]s and %[6]s
# Paste these into a shell (they need curl and sed):

TETHER=%[1]s
KEY=%[7]s

# 1. A new handset enrolls itself with an enrollment code.
curl -s -X POST $TETHER/v1/enroll -H 'Content-Type: application/json' -d '%[8]s'; echo

# 2. walter logs in from his handset, and we keep the tokens.
LOGIN=$(curl -s -X POST $TETHER/v1/auth/login -H 'Content-Type: application/json' -d '%[9]s'); echo "$LOGIN"
AT=$(echo "$LOGIN" | sed -E 's/.*"accessToken":"([^"]+)".*/\1/')
RT=$(echo "$LOGIN" | sed -E 's/.*"refreshToken":"([^"]+)".*/\1/')
DEV=$(echo "$LOGIN" | sed -E 's/.*"deviceId":"([^"]+)".*/\1/')

# 3. Who is this?
curl -s $TETHER/v1/auth/me -H "Authorization: Bearer $AT"; echo

# 4. Renew the access token, from the same handset (it works expired, too).
curl -s -X POST $TETHER/v1/auth/renew -H 'Content-Type: application/json' -d '{"accessToken":"'"$AT"'","deviceId":"'"$DEV"'"}'; echo

# 5. Refresh: new tokens, and the refresh token rotates.
curl -s -X POST $TETHER/v1/auth/refresh -H 'Content-Type: application/json' -d '{"refreshToken":"'"$RT"'","deviceId":"'"$DEV"'"}'; echo

# 6. A manager sees who is logged in where.
curl -s $TETHER/v1/sessions -H "Authorization: Bearer $KEY"; echo
`, base, d.managerPassword, d.workerPassword, demoIMEIs[0], demoIMEIs[1], demoIMEIs[2], d.apiKey, enroll, login)
}

// demoBase is the URL the printed commands use for a listener address.
func demoBase(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
