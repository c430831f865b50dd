package storagetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

// The groups of the scope tests.
const (
	north = "north"
	south = "south"
	depot = "depot-7"
)

// scopeCases are the scopes every scoped list is tried with: one group,
// another, both, no restriction, nothing, and groups that hold nothing.
var scopeCases = []struct {
	name   string
	groups []string
}{
	{"north", []string{north}},
	{"south", []string{south}},
	{"north+south", []string{south, north}},
	{"depot", []string{depot}},
	{"nil", nil},
	{"empty", []string{}},
	{"empty name", []string{""}},
	{"unknown", []string{"nowhere"}},
}

// scopeWorld is a fleet of three groups and handsets in none, with workers,
// a manager and an admin, their sessions, codes and events, each named by
// the role it plays in the scope rules.
type scopeWorld struct {
	devices  map[string]storage.Device
	users    map[string]storage.User
	sessions map[string]storage.Session
	codes    map[string]storage.EnrollmentCode
	events   map[string]storage.Event
}

// name returns the world's name of the record with the given ID.
func (w *scopeWorld) name(id string) string {
	for _, m := range []map[string]string{w.deviceIDs(), w.userIDs(), w.ids(w.sessions), w.ids(w.codes), w.ids(w.events)} {
		for n, i := range m {
			if i == id {
				return n
			}
		}
	}
	return id
}

func (w *scopeWorld) deviceIDs() map[string]string { return w.ids(w.devices) }
func (w *scopeWorld) userIDs() map[string]string   { return w.ids(w.users) }

func (w *scopeWorld) ids(m any) map[string]string {
	out := map[string]string{}
	switch m := m.(type) {
	case map[string]storage.Device:
		for n, r := range m {
			out[n] = r.ID
		}
	case map[string]storage.User:
		for n, r := range m {
			out[n] = r.ID
		}
	case map[string]storage.Session:
		for n, r := range m {
			out[n] = r.ID
		}
	case map[string]storage.EnrollmentCode:
		for n, r := range m {
			out[n] = r.ID
		}
	case map[string]storage.Event:
		for n, r := range m {
			out[n] = r.ID
		}
	}
	return out
}

// names turns IDs into the world's names, sorted.
func (w *scopeWorld) names(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = w.name(id)
	}
	slices.Sort(out)
	return out
}

var imeiSeq struct {
	sync.Mutex
	n int
}

// nextIMEI is a 15-digit IMEI no other device of the test has.
func nextIMEI() string {
	imeiSeq.Lock()
	defer imeiSeq.Unlock()
	imeiSeq.n++
	return fmt.Sprintf("35%013d", imeiSeq.n)
}

func scopedDevice(group string, assigned ...string) storage.Device {
	d := newDevice(nextIMEI())
	d.Group, d.AssignedUsers = group, assigned
	return d
}

func event(action, userID, deviceID string) storage.Event {
	return storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: action, Outcome: "success", UserID: userID, DeviceID: deviceID}
}

func newScopeWorld(t *testing.T, s storage.Store) *scopeWorld {
	t.Helper()
	ctx := context.Background()
	w := &scopeWorld{devices: map[string]storage.Device{}, users: map[string]storage.User{}, sessions: map[string]storage.Session{},
		codes: map[string]storage.EnrollmentCode{}, events: map[string]storage.Event{}}
	user := func(name string, role storage.Role, scopes ...string) {
		u := newUser(name, role)
		u.Scopes = scopes
		w.users[name] = mustCreateUser(t, s, u)
	}
	user("wA", storage.RoleWorker)                 // on a north handset
	user("wB", storage.RoleWorker)                 // on a south handset
	user("wAB", storage.RoleWorker)                // on a north and a south handset
	user("wS", storage.RoleWorker, south)          // created into south, on no handset
	user("wN", storage.RoleWorker)                 // on a handset in no group
	user("mA", storage.RoleManager, north)         // manages north, and is on a north handset
	user("adm", storage.RoleAdmin)                 // never in a scope
	user("mNone", storage.RoleManager, "", "\x00") // scopes that name no group
	id := func(n string) string { return w.users[n].ID }
	device := func(name, group string, assigned ...string) {
		w.devices[name] = mustCreateDevice(t, s, scopedDevice(group, assigned...))
	}
	device("dA1", north, id("wA"), id("mA"))
	device("dA2", north, id("wAB"))
	device("dB1", south, id("wB"), id("wAB"))
	device("dN", "", id("wN"))
	device("dC", depot)
	dev := func(n string) string { return w.devices[n].ID }
	session := func(name, user, device string) {
		w.sessions[name] = mustCreateSession(t, s, newSession(id(user), device))
	}
	session("s1", "wA", dev("dA1"))  // north: handset and user
	session("s2", "wB", dev("dB1"))  // south: handset and user
	session("s3", "wN", dev("dA2"))  // north: by the handset only
	session("s4", "wS", "")          // south: by the user only
	session("s5", "mA", "")          // none: a manager is in no scope
	session("s6", "wN", dev("dN"))   // none
	session("s7", "wA", "")          // north: by the user
	session("s8", "adm", dev("dC"))  // depot: by the handset
	session("s9", "wB", dev("dA1"))  // north by the handset, south by the user
	session("s10", "mA", dev("dA1")) // north: by the handset
	for name, group := range map[string]string{"cA": north, "cB": south, "cN": ""} {
		c := storage.EnrollmentCode{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), Group: group, MaxUses: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
		if err := s.CreateEnrollmentCode(ctx, c); err != nil {
			t.Fatal(err)
		}
		w.codes[name] = c
	}
	given := event("import", id("wN"), "")
	given.Groups = []string{depot, ""}
	for name, e := range map[string]storage.Event{
		"e1": event("device.update", "", dev("dA1")),     // north
		"e2": event("login", id("wS"), ""),               // south
		"e3": event("login", id("wAB"), dev("dC")),       // depot, north, south
		"e4": event("login", id("mA"), ""),               // none: a manager's own
		"e5": event("keys.rotate", "", ""),               // none
		"e6": given,                                      // depot, given by the caller
		"e7": event("login", id("wN"), dev("dN")),        // none
		"e8": event("login", "usr_gone", "dev_gone"),     // none: records that do not exist
		"e9": event("login", id("mA"), dev("dA1")),       // north: by the handset
		"eU": event("user.create", id("wB"), dev("dB1")), // south
	} {
		w.events[name] = e
	}
	// Some through AppendEvents, some in the transaction of a write.
	var batch []storage.Event
	for _, n := range []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"} {
		batch = append(batch, w.events[n])
	}
	if err := s.AppendEvents(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(ctx, id("wB"), func(u storage.User) (storage.User, error) {
		u.FirstName = "Bea"
		return u, nil
	}, storage.WithEvents(w.events["eU"])); err != nil {
		t.Fatal(err)
	}
	return w
}

// walk lists every page of a list in pages of limit, and fails the test
// unless every page but the last is full, IDs go one way, and none is
// seen twice. during, if not nil, runs after each page.
func walkPages[T any](t *testing.T, what string, limit int, backwards bool, list func(after string) (storage.Page[T], error), id func(T) string, during func(page int)) []string {
	t.Helper()
	var ids []string
	after := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("%s: paging does not end", what)
		}
		p, err := list(after)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(p.Items) > limit {
			t.Fatalf("%s: page of %d; want at most %d", what, len(p.Items), limit)
		}
		if p.Next != "" && len(p.Items) != limit {
			t.Fatalf("%s: page %d holds %d with a next page; want a full page of %d", what, page, len(p.Items), limit)
		}
		for _, it := range p.Items {
			i := id(it)
			if n := len(ids); n > 0 && (!backwards && i <= ids[n-1] || backwards && i >= ids[n-1]) {
				t.Fatalf("%s: %s after %s: out of order or twice", what, i, ids[n-1])
			}
			ids = append(ids, i)
		}
		if p.Next == "" {
			return ids
		}
		if p.Next != id(p.Items[len(p.Items)-1]) {
			t.Fatalf("%s: next cursor %q; want the last item's ID", what, p.Next)
		}
		after = p.Next
		if during != nil {
			during(page)
		}
	}
}

func allDevices(t *testing.T, s storage.Store, f storage.DeviceFilter, limit int) []string {
	t.Helper()
	return walkPages(t, fmt.Sprintf("devices %+v", f), limit, false, func(after string) (storage.Page[storage.Device], error) {
		f.After, f.Limit = after, limit
		return s.ListDevices(context.Background(), f)
	}, func(d storage.Device) string { return d.ID }, nil)
}

func allUsers(t *testing.T, s storage.Store, f storage.UserFilter, limit int) []string {
	t.Helper()
	return walkPages(t, fmt.Sprintf("users %+v", f), limit, false, func(after string) (storage.Page[storage.User], error) {
		f.After, f.Limit = after, limit
		return s.ListUsers(context.Background(), f)
	}, func(u storage.User) string { return u.ID }, nil)
}

func allSessions(t *testing.T, s storage.Store, f storage.SessionFilter, limit int) []string {
	t.Helper()
	return walkPages(t, fmt.Sprintf("sessions %+v", f), limit, false, func(after string) (storage.Page[storage.Session], error) {
		f.After, f.Limit = after, limit
		return s.ListSessions(context.Background(), f)
	}, func(s storage.Session) string { return s.ID }, nil)
}

func allEvents(t *testing.T, s storage.Store, f storage.EventFilter, limit int) []string {
	t.Helper()
	return walkPages(t, fmt.Sprintf("events %+v", f), limit, f.NewestFirst, func(after string) (storage.Page[storage.Event], error) {
		f.After, f.Limit = after, limit
		return s.ListEvents(context.Background(), f)
	}, func(e storage.Event) string { return e.ID }, nil)
}

func codeIDs(t *testing.T, s storage.Store, f storage.CodeFilter) []string {
	t.Helper()
	codes, err := s.ListEnrollmentCodes(context.Background(), f)
	if err != nil {
		t.Fatalf("ListEnrollmentCodes(%+v): %v", f, err)
	}
	var ids []string
	for i, c := range codes {
		if i > 0 && c.ID <= codes[i-1].ID {
			t.Fatalf("ListEnrollmentCodes(%+v): out of order", f)
		}
		ids = append(ids, c.ID)
	}
	return ids
}

// testScopeFilters: every list, filtered by each scope, holds what the
// scope rules say, named one by one; and the same as the model (the pure
// functions of storage on the unscoped lists).
func testScopeFilters(t *testing.T, s storage.Store) {
	ctx := context.Background()
	w := newScopeWorld(t, s)
	every := func(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
	want := map[string]struct{ devices, users, sessions, codes, events []string }{
		"north": {
			devices:  []string{"dA1", "dA2"},
			users:    []string{"wA", "wAB"},
			sessions: []string{"s1", "s10", "s3", "s7", "s9"},
			codes:    []string{"cA"},
			events:   []string{"e1", "e3", "e9"},
		},
		"south": {
			devices:  []string{"dB1"},
			users:    []string{"wAB", "wB", "wS"},
			sessions: []string{"s2", "s4", "s9"},
			codes:    []string{"cB"},
			events:   []string{"e2", "e3", "eU"},
		},
		"north+south": {
			devices:  []string{"dA1", "dA2", "dB1"},
			users:    []string{"wA", "wAB", "wB", "wS"},
			sessions: []string{"s1", "s10", "s2", "s3", "s4", "s7", "s9"},
			codes:    []string{"cA", "cB"},
			events:   []string{"e1", "e2", "e3", "e9", "eU"},
		},
		"depot": {
			devices:  []string{"dC"},
			sessions: []string{"s8"},
			events:   []string{"e3", "e6"},
		},
		"nil": {
			devices:  every(w.deviceIDs()),
			users:    every(w.userIDs()),
			sessions: every(w.ids(w.sessions)),
			codes:    every(w.ids(w.codes)),
			events:   every(w.ids(w.events)),
		},
	}
	for _, c := range scopeCases {
		wnt := want[c.name] // empty, empty name and unknown: nothing
		for _, limit := range []int{1, 2, 50} {
			check := func(kind string, got, want []string) {
				t.Helper()
				if g := w.names(got); !slices.Equal(g, want) && !(len(g) == 0 && len(want) == 0) {
					t.Fatalf("%s in scope %s, pages of %d: got %v; want %v", kind, c.name, limit, g, want)
				}
			}
			check("devices", allDevices(t, s, storage.DeviceFilter{Groups: c.groups}, limit), wnt.devices)
			check("users", allUsers(t, s, storage.UserFilter{Groups: c.groups}, limit), wnt.users)
			check("sessions", allSessions(t, s, storage.SessionFilter{Groups: c.groups}, limit), wnt.sessions)
			check("events", allEvents(t, s, storage.EventFilter{Groups: c.groups}, limit), wnt.events)
			newest := allEvents(t, s, storage.EventFilter{Groups: c.groups, NewestFirst: true}, limit)
			slices.Reverse(newest)
			check("events newest first", newest, wnt.events)
			check("codes", codeIDs(t, s, storage.CodeFilter{Groups: c.groups}), wnt.codes)
		}
		checkModel(t, s, c.groups)
	}

	// The scope with the other fields: both must hold.
	id := func(n string) string {
		if d, ok := w.devices[n]; ok {
			return d.ID
		}
		return w.users[n].ID
	}
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"devices of north in south", allDevices(t, s, storage.DeviceFilter{Group: south, Groups: []string{north}}, 10), nil},
		{"devices of north assigned to wAB", allDevices(t, s, storage.DeviceFilter{AssignedUser: id("wAB"), Groups: []string{north}}, 10), []string{"dA2"}},
		{"devices of north, retired", allDevices(t, s, storage.DeviceFilter{Status: storage.DeviceRetired, Groups: []string{north}}, 10), nil},
		{"managers of north", allUsers(t, s, storage.UserFilter{Role: storage.RoleManager, Groups: []string{north}}, 10), nil},
		// "ws@" (the address wS@example.com): an id, random, may hold "ws".
		{"workers of south named wS", allUsers(t, s, storage.UserFilter{Text: "ws@", Groups: []string{south}}, 10), []string{"wS"}},
		{"sessions of south on dA1", allSessions(t, s, storage.SessionFilter{DeviceID: id("dA1"), Groups: []string{south}}, 10), []string{"s9"}},
		{"sessions of north of wA", allSessions(t, s, storage.SessionFilter{UserID: id("wA"), Groups: []string{north}}, 10), []string{"s1", "s7"}},
		{"live sessions of north", allSessions(t, s, storage.SessionFilter{LiveAt: now.Add(time.Minute), Groups: []string{north}}, 10), []string{"s1", "s10", "s3", "s7", "s9"}},
		{"logins of north", allEvents(t, s, storage.EventFilter{Action: "login", Groups: []string{north}}, 10), []string{"e3", "e9"}},
		{"events of south about wB", allEvents(t, s, storage.EventFilter{UserID: id("wB"), Groups: []string{south}}, 10), []string{"eU"}},
	} {
		if got := w.names(c.got); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Fatalf("%s: got %v; want %v", c.name, got, c.want)
		}
	}

	// Scopes are kept as given, order and all; a copy is the caller's.
	if got, err := s.GetUser(ctx, w.users["mNone"].ID); err != nil || !slices.Equal(got.Scopes, []string{"", "\x00"}) {
		t.Fatalf("GetUser(mNone).Scopes = %q, %v", got.Scopes, err)
	}
	if got, err := s.GetUser(ctx, w.users["wS"].ID); err != nil || !slices.Equal(got.Scopes, []string{south}) {
		t.Fatalf("GetUser(wS).Scopes = %q, %v", got.Scopes, err)
	} else if c := got.Clone(); &c.Scopes[0] == &got.Scopes[0] {
		t.Fatal("User.Clone shares Scopes")
	}

	// One record at a time.
	for _, c := range []struct {
		user   string
		groups []string
		want   bool
	}{
		{"wA", []string{north}, true}, {"wA", []string{south}, false}, {"wA", nil, true}, {"wA", []string{}, false},
		{"wAB", []string{south}, true}, {"wS", []string{south}, true}, {"wS", []string{north}, false},
		{"wN", []string{north, south, depot}, false}, {"wN", []string{""}, false},
		{"mA", []string{north}, false}, {"mA", nil, true}, {"adm", []string{depot}, false},
	} {
		if got, err := s.UserInScope(ctx, w.users[c.user].ID, c.groups); err != nil || got != c.want {
			t.Fatalf("UserInScope(%s, %q) = %v, %v; want %v", c.user, c.groups, got, err, c.want)
		}
	}
	_, err := s.UserInScope(ctx, "usr_missing", []string{north})
	wantNotFound(t, err)
	_, err = s.UserInScope(ctx, "usr_missing", nil)
	wantNotFound(t, err)
	for name, sess := range w.sessions {
		for _, c := range scopeCases {
			in := slices.Contains(want[c.name].sessions, name)
			if got, err := s.SessionInScope(ctx, sess.ID, c.groups); err != nil || got != in {
				t.Fatalf("SessionInScope(%s, %q) = %v, %v; want %v", name, c.groups, got, err, in)
			}
		}
	}
	_, err = s.SessionInScope(ctx, "ses_missing", nil)
	wantNotFound(t, err)
	for user, want := range map[string][]string{"wAB": {north, south}, "wA": {north}, "mA": {north}, "wN": nil, "wS": nil, "nobody": nil} {
		if got, err := s.HandsetGroups(ctx, w.users[user].ID); err != nil || !slices.Equal(got, want) {
			t.Fatalf("HandsetGroups(%s) = %q, %v; want %q", user, got, err, want)
		}
	}

	// Each event with the groups the rule gives it.
	page, err := s.ListEvents(ctx, storage.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][]string{"e1": {north}, "e2": {south}, "e3": {depot, north, south}, "e6": {depot}, "e9": {north}, "eU": {south}}
	for _, e := range page.Items {
		if n := w.name(e.ID); !slices.Equal(e.Groups, groups[n]) {
			t.Fatalf("event %s (%s) has groups %q; want %q", n, e.Action, e.Groups, groups[n])
		}
	}
}

// checkModel fails the test unless every scoped list holds exactly what the
// storage package's scope functions keep of the unscoped lists.
func checkModel(t *testing.T, s storage.Store, groups []string) {
	t.Helper()
	ctx := context.Background()
	devices := listAll(t, func(after string) (storage.Page[storage.Device], error) {
		return s.ListDevices(ctx, storage.DeviceFilter{After: after, Limit: storage.MaxPageSize})
	}, func(d storage.Device) string { return d.ID })
	users := listAll(t, func(after string) (storage.Page[storage.User], error) {
		return s.ListUsers(ctx, storage.UserFilter{After: after, Limit: storage.MaxPageSize})
	}, func(u storage.User) string { return u.ID })
	sessions := listAll(t, func(after string) (storage.Page[storage.Session], error) {
		return s.ListSessions(ctx, storage.SessionFilter{After: after, Limit: storage.MaxPageSize})
	}, func(s storage.Session) string { return s.ID })
	events := listAll(t, func(after string) (storage.Page[storage.Event], error) {
		return s.ListEvents(ctx, storage.EventFilter{After: after, Limit: storage.MaxPageSize})
	}, func(e storage.Event) string { return e.ID })
	groupOf := map[string]string{}
	handsets := map[string][]string{}
	for _, d := range devices {
		groupOf[d.ID] = d.Group
		for _, u := range d.AssignedUsers {
			handsets[u] = storage.ScopeGroups(handsets[u], []string{d.Group})
		}
	}
	byID := map[string]storage.User{}
	for _, u := range users {
		byID[u.ID] = u
	}
	keep := func(n int, in func(int) bool, id func(int) string) []string {
		var out []string
		for i := range n {
			if in(i) {
				out = append(out, id(i))
			}
		}
		return out
	}
	same := func(kind string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s in scope %q: the store lists %v; the scope rules keep %v", kind, groups, got, want)
		}
	}
	same("devices", allDevices(t, s, storage.DeviceFilter{Groups: groups}, 3), keep(len(devices),
		func(i int) bool { return storage.DeviceInScope(devices[i], groups) }, func(i int) string { return devices[i].ID }))
	same("users", allUsers(t, s, storage.UserFilter{Groups: groups}, 3), keep(len(users),
		func(i int) bool { return storage.UserInScope(users[i], handsets[users[i].ID], groups) }, func(i int) string { return users[i].ID }))
	same("sessions", allSessions(t, s, storage.SessionFilter{Groups: groups}, 3), keep(len(sessions), func(i int) bool {
		ss := sessions[i]
		return storage.SessionInScope(ss, groupOf[ss.DeviceID], byID[ss.UserID], handsets[ss.UserID], groups)
	}, func(i int) string { return sessions[i].ID }))
	same("events", allEvents(t, s, storage.EventFilter{Groups: groups}, 3), keep(len(events),
		func(i int) bool { return storage.EventInScope(events[i], groups) }, func(i int) string { return events[i].ID }))
	for _, u := range users {
		if in, err := s.UserInScope(ctx, u.ID, groups); err != nil || in != storage.UserInScope(u, handsets[u.ID], groups) {
			t.Fatalf("UserInScope(%s, %q) = %v, %v; the rules say %v", u.Username, groups, in, err, !in)
		}
	}
}

// listAll reads every page of a list.
func listAll[T any](t *testing.T, list func(after string) (storage.Page[T], error), id func(T) string) []T {
	t.Helper()
	var out []T
	after := ""
	for {
		p, err := list(after)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			return out
		}
		after = id(p.Items[len(p.Items)-1])
	}
}

// testScopePaging: scoped lists in small pages, among many records out of
// scope, while records are added before and after the cursor: every page
// but the last full, each record once, the ones there throughout all
// seen, and the ones added after the cursor too.
func testScopePaging(t *testing.T, s storage.Store) {
	ctx := context.Background()
	groupOf := func(i int) string { return []string{north, south, "", depot, north}[i%5] }
	var workers []storage.User
	for i := range 12 {
		u := newUser(fmt.Sprintf("worker%02d", i), storage.RoleWorker)
		if i%4 == 3 {
			u.Scopes = []string{south}
		}
		workers = append(workers, mustCreateUser(t, s, u))
	}
	var devices []storage.Device
	for i := range 40 {
		devices = append(devices, mustCreateDevice(t, s, scopedDevice(groupOf(i), workers[i%len(workers)].ID)))
	}
	for i, d := range devices {
		mustCreateSession(t, s, newSession(workers[(i+5)%len(workers)].ID, d.ID))
		if err := s.AppendEvents(ctx, event("login", "", d.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for round, groups := range [][]string{{north}, {south, north}, {depot}} {
		f := storage.DeviceFilter{Groups: groups}
		before := allDevices(t, s, f, 1000)
		// Added while walking: one before the cursor (never seen), one
		// after it (seen once), one moved into scope after the cursor.
		var early, late storage.Device
		var movedID string
		walked := walkPages(t, "devices", 3, false, func(after string) (storage.Page[storage.Device], error) {
			f.After, f.Limit = after, 3
			return s.ListDevices(ctx, f)
		}, func(d storage.Device) string { return d.ID }, func(page int) {
			if page != 0 {
				return
			}
			early = scopedDevice(groups[0])
			early.ID = "dev_0000" + strings.Repeat("0", 22) + fmt.Sprint(round)
			late = scopedDevice(groups[0])
			late.ID = "dev_ZZZZ" + strings.Repeat("Z", 22) + fmt.Sprint(round)
			mustCreateDevice(t, s, early)
			mustCreateDevice(t, s, late)
			// The last device out of scope, moved in.
			for i := len(devices) - 1; i >= 0; i-- {
				if !slices.Contains(groups, devices[i].Group) && devices[i].Group != "" {
					movedID = devices[i].ID
					devices[i].Group = groups[0]
					break
				}
			}
			if _, err := s.UpdateDevice(ctx, movedID, func(d storage.Device) (storage.Device, error) {
				d.Group = groups[0]
				return d, nil
			}); err != nil {
				t.Fatal(err)
			}
		})
		want := slices.Clone(before)
		want = append(want, late.ID)
		if movedID > before[2] { // after the cursor of the first page (of 3)
			want = append(want, movedID)
		}
		slices.Sort(want)
		if !slices.Equal(walked, want) {
			t.Fatalf("devices in %q, walked while adding: got %d %v; want %d %v", groups, len(walked), walked, len(want), want)
		}
	}

	// Users, sessions and events in pages of 2, each the same as one page
	// of all, while more are added.
	for _, groups := range [][]string{{north}, {south}, {north, south}} {
		wantUsers := allUsers(t, s, storage.UserFilter{Groups: groups}, 1000)
		var added []string
		uf := storage.UserFilter{Groups: groups}
		got := walkPages(t, "users", 2, false, func(after string) (storage.Page[storage.User], error) {
			uf.After, uf.Limit = after, 2
			return s.ListUsers(ctx, uf)
		}, func(u storage.User) string { return u.ID }, func(page int) {
			u := newUser(fmt.Sprintf("late%d-%d-%s", page, len(groups), groups[0]), storage.RoleWorker)
			u.Scopes = groups[:1]
			added = append(added, mustCreateUser(t, s, u).ID)
		})
		want := append(slices.Clone(wantUsers), added...)
		if !slices.Equal(got, want) {
			t.Fatalf("users in %q walked while adding: got %v; want %v", groups, got, want)
		}

		wantSessions := allSessions(t, s, storage.SessionFilter{Groups: groups}, 1000)
		added = nil
		sf := storage.SessionFilter{Groups: groups}
		got = walkPages(t, "sessions", 2, false, func(after string) (storage.Page[storage.Session], error) {
			sf.After, sf.Limit = after, 2
			return s.ListSessions(ctx, sf)
		}, func(s storage.Session) string { return s.ID }, func(page int) {
			d := mustCreateDevice(t, s, scopedDevice(groups[0]))
			added = append(added, mustCreateSession(t, s, newSession(workers[page%len(workers)].ID, d.ID)).ID)
		})
		want = append(slices.Clone(wantSessions), added...)
		if !slices.Equal(got, want) {
			t.Fatalf("sessions in %q walked while adding: got %d; want %d", groups, len(got), len(want))
		}

		for _, newest := range []bool{false, true} {
			ef := storage.EventFilter{Groups: groups, NewestFirst: newest}
			wantEvents := allEvents(t, s, ef, 1000)
			added = nil
			got = walkPages(t, "events", 2, newest, func(after string) (storage.Page[storage.Event], error) {
				ef.After, ef.Limit = after, 2
				return s.ListEvents(ctx, ef)
			}, func(e storage.Event) string { return e.ID }, func(int) {
				e := event("login", "", devices[0].ID)
				e.Groups = groups[:1]
				if err := s.AppendEvents(ctx, e); err != nil {
					t.Fatal(err)
				}
				added = append(added, e.ID)
			})
			want = wantEvents
			if !newest { // newest first, what is added is behind the cursor
				want = append(slices.Clone(wantEvents), added...)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("events in %q (newest first %v) walked while adding: got %d; want %d", groups, newest, len(got), len(want))
			}
		}
		checkModel(t, s, groups)
	}
}

// testEventGroups: the store sets each event's groups in the transaction
// that writes it, from the handset and the worker as they are then, and
// they stay as written.
func testEventGroups(t *testing.T, s storage.Store) {
	ctx := context.Background()
	groupsOf := func(id string) []string {
		t.Helper()
		page, err := s.ListEvents(ctx, storage.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			if e.ID == id {
				return e.Groups
			}
		}
		t.Fatalf("event %s not stored", id)
		return nil
	}
	// A device's own registration carries its group.
	d := scopedDevice(north)
	reg := event("device.register", "", d.ID)
	if err := s.CreateDevice(ctx, d, storage.WithEvents(reg)); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(reg.ID); !slices.Equal(got, []string{north}) {
		t.Fatalf("registration groups %q; want [north]", got)
	}
	// A worker created into a scope, in the same transaction.
	w := newUser("walter", storage.RoleWorker)
	w.Scopes = []string{depot}
	created := event("user.create", w.ID, "")
	if _, err := s.CreateUser(ctx, w, storage.WithEvents(created)); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(created.ID); !slices.Equal(got, []string{depot}) {
		t.Fatalf("user.create groups %q; want [depot-7]", got)
	}
	// A move, with its event in the same transaction: the new group.
	moved := event("device.update", "", d.ID)
	if _, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Group = south
		d.AssignedUsers = []string{w.ID}
		return d, nil
	}, storage.WithEvents(moved)); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(moved.ID); !slices.Equal(got, []string{south}) {
		t.Fatalf("move groups %q; want [south]", got)
	}
	if got := groupsOf(reg.ID); !slices.Equal(got, []string{north}) {
		t.Fatalf("the registration after the move: %q; want [north], as written", got)
	}
	// The worker's events: their scopes and their handsets' groups.
	login := event("login", w.ID, "")
	if err := s.AppendEvents(ctx, login); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(login.ID); !slices.Equal(got, []string{depot, south}) {
		t.Fatalf("login groups %q; want [depot-7 south]", got)
	}
	// The same user made a manager: their own events carry no groups.
	if _, err := s.UpdateUser(ctx, w.ID, func(u storage.User) (storage.User, error) {
		u.Role = storage.RoleManager
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	promoted := event("login", w.ID, "")
	if err := s.AppendEvents(ctx, promoted); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(promoted.ID); got != nil {
		t.Fatalf("a manager's login has groups %q; want none", got)
	}
	// A worker on many handsets of many groups, and a refused write.
	many := mustCreateUser(t, s, newUser("many", storage.RoleWorker))
	var ds []storage.Device
	var want []string
	for i := range 60 {
		g := fmt.Sprintf("site-%02d", i%12)
		ds = append(ds, scopedDevice(g, many.ID))
		want = storage.ScopeGroups(want, []string{g})
	}
	if err := s.CreateDevices(ctx, ds); err != nil {
		t.Fatal(err)
	}
	e := event("login", many.ID, "")
	if err := s.AppendEvents(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(e.ID); !slices.Equal(got, want) {
		t.Fatalf("groups of a worker on 60 handsets: %q; want %q", got, want)
	}
	if got, err := s.HandsetGroups(ctx, many.ID); err != nil || !slices.Equal(got, want) {
		t.Fatalf("HandsetGroups = %q, %v; want %q", got, err, want)
	}
	for _, g := range []string{"site-00", "site-11"} {
		if got := allEvents(t, s, storage.EventFilter{Groups: []string{g}}, 5); !slices.Equal(got, []string{e.ID}) {
			t.Fatalf("events of %s: %v; want the login", g, got)
		}
	}
	// The record passed in is the caller's, unchanged.
	if e.Groups != nil {
		t.Fatalf("AppendEvents changed the caller's event: %q", e.Groups)
	}
}

// testScopeMove: a handset moves to another group, and its worker with it:
// what each scope holds moves too, but the events written before keep the
// groups they were written with.
func testScopeMove(t *testing.T, s storage.Store) {
	ctx := context.Background()
	w := mustCreateUser(t, s, newUser("walter", storage.RoleWorker))
	d := mustCreateDevice(t, s, scopedDevice(north, w.ID))
	onHandset := mustCreateSession(t, s, newSession(w.ID, d.ID))
	noHandset := mustCreateSession(t, s, newSession(w.ID, ""))
	before := event("login", w.ID, d.ID)
	if err := s.AppendEvents(ctx, before); err != nil {
		t.Fatal(err)
	}
	type holds struct{ devices, users, sessions, events []string }
	expect := func(step string, want map[string]holds) {
		t.Helper()
		for g, h := range want {
			scope := []string{g}
			for kind, c := range map[string][2][]string{
				"devices":  {allDevices(t, s, storage.DeviceFilter{Groups: scope}, 2), h.devices},
				"users":    {allUsers(t, s, storage.UserFilter{Groups: scope}, 2), h.users},
				"sessions": {allSessions(t, s, storage.SessionFilter{Groups: scope}, 2), h.sessions},
				"events":   {allEvents(t, s, storage.EventFilter{Groups: scope}, 2), h.events},
			} {
				slices.Sort(c[1])
				if !slices.Equal(c[0], c[1]) && !(len(c[0]) == 0 && len(c[1]) == 0) {
					t.Fatalf("%s: %s of %s: got %v; want %v", step, kind, g, c[0], c[1])
				}
			}
			checkModel(t, s, scope)
			in, err := s.UserInScope(ctx, w.ID, scope)
			if err != nil || in != (len(h.users) > 0) {
				t.Fatalf("%s: UserInScope(%s) = %v, %v", step, g, in, err)
			}
		}
	}
	expect("before", map[string]holds{
		north: {[]string{d.ID}, []string{w.ID}, []string{onHandset.ID, noHandset.ID}, []string{before.ID}},
		south: {},
	})
	move := event("device.update", "", d.ID)
	if _, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Group = south
		return d, nil
	}, storage.WithEvents(move)); err != nil {
		t.Fatal(err)
	}
	after := event("login", w.ID, d.ID)
	if err := s.AppendEvents(ctx, after); err != nil {
		t.Fatal(err)
	}
	expect("moved to south", map[string]holds{
		north: {events: []string{before.ID}},
		south: {[]string{d.ID}, []string{w.ID}, []string{onHandset.ID, noHandset.ID}, []string{move.ID, after.ID}},
	})
	// Unassigned: the handset's sessions stay in its group, the worker's
	// others leave it.
	if _, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.AssignedUsers = nil
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	expect("unassigned", map[string]holds{
		north: {events: []string{before.ID}},
		south: {[]string{d.ID}, nil, []string{onHandset.ID}, []string{move.ID, after.ID}},
	})
	// Created into north by a scoped manager: every session of theirs is
	// in north, the one on the south handset in south too.
	if _, err := s.UpdateUser(ctx, w.ID, func(u storage.User) (storage.User, error) {
		u.Scopes = []string{north}
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	expect("scoped to north", map[string]holds{
		north: {nil, []string{w.ID}, []string{onHandset.ID, noHandset.ID}, []string{before.ID}},
		south: {[]string{d.ID}, nil, []string{onHandset.ID}, []string{move.ID, after.ID}},
	})
	// Scopes and group cleared: in no scope, but the events as written.
	if _, err := s.UpdateUser(ctx, w.ID, func(u storage.User) (storage.User, error) {
		u.Scopes = nil
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Group = ""
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	expect("in no group", map[string]holds{
		north: {events: []string{before.ID}},
		south: {events: []string{move.ID, after.ID}},
	})
}

// testScopeConcurrent: handsets moving between groups, assignments and
// scopes changing, and events written, all at once: the scoped lists still
// hold exactly what the scope rules keep, and every event written with a
// move has the group the move gave.
func testScopeConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	var workers []storage.User
	for i := range 6 {
		workers = append(workers, mustCreateUser(t, s, newUser(fmt.Sprintf("w%d", i), storage.RoleWorker)))
	}
	var devices []storage.Device
	for i := range 6 {
		d := mustCreateDevice(t, s, scopedDevice([]string{north, south}[i%2], workers[i].ID))
		devices = append(devices, d)
		mustCreateSession(t, s, newSession(workers[(i+1)%6].ID, d.ID))
	}
	const rounds = 12
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				var err error
				switch (g + r) % 4 {
				case 0: // move a handset, with its event
					to := []string{north, south, depot}[(g*7+r)%3]
					ev := event("device.update", "", devices[(g+r)%6].ID)
					ev.Detail = map[string]string{"to": to}
					_, err = s.UpdateDevice(ctx, ev.DeviceID, func(d storage.Device) (storage.Device, error) {
						d.Group = to
						return d, nil
					}, storage.WithEvents(ev))
				case 1: // reassign a handset
					_, err = s.UpdateDevice(ctx, devices[(g*5+r)%6].ID, func(d storage.Device) (storage.Device, error) {
						d.AssignedUsers = []string{workers[(g+r)%6].ID, workers[(g+2*r)%6].ID}
						return d, nil
					})
				case 2: // scope a worker
					_, err = s.UpdateUser(ctx, workers[(g+r)%6].ID, func(u storage.User) (storage.User, error) {
						u.Scopes = [][]string{nil, {north}, {south, depot}}[(g+r)%3]
						return u, nil
					})
				case 3: // an event about a worker and one about a handset
					err = s.AppendEvents(ctx, event("login", workers[(g+r)%6].ID, ""), event("renew", "", devices[(g+r)%6].ID))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, groups := range [][]string{{north}, {south}, {depot}, {north, south}, {north, south, depot}} {
		checkModel(t, s, groups)
	}
	page, err := s.ListEvents(ctx, storage.EventFilter{Limit: storage.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Items {
		switch {
		case e.Action == "device.update" && !slices.Equal(e.Groups, []string{e.Detail["to"]}):
			t.Fatalf("a move to %s has groups %q", e.Detail["to"], e.Groups)
		case e.Action == "renew" && len(e.Groups) != 1:
			t.Fatalf("an event about a handset has groups %q; want the one it was in", e.Groups)
		}
	}
}

// SeedScopes fills s, for a test of the migration that brings the scope
// indexes or columns, with handsets of two groups, workers on them (one
// also created into a group), a manager, sessions and an event. The check
// it returns fails the test unless the store, migrated, holds in each
// scope what it should: events written before have no groups and are in
// none.
func SeedScopes(t *testing.T, s storage.Store) (check func(t *testing.T, s storage.Store)) {
	t.Helper()
	ctx := context.Background()
	wA := mustCreateUser(t, s, newUser("wa", storage.RoleWorker))
	wS := newUser("ws", storage.RoleWorker)
	wS.Scopes = []string{south}
	wS = mustCreateUser(t, s, wS)
	mA := newUser("ma", storage.RoleManager)
	mA.Scopes = []string{north}
	mA = mustCreateUser(t, s, mA)
	dA := mustCreateDevice(t, s, scopedDevice(north, wA.ID, mA.ID))
	dB := mustCreateDevice(t, s, scopedDevice(south))
	sA := mustCreateSession(t, s, newSession(wA.ID, dA.ID))
	sS := mustCreateSession(t, s, newSession(wS.ID, ""))
	code := storage.EnrollmentCode{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), Group: south, MaxUses: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := s.CreateEnrollmentCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, event("login", wA.ID, dA.ID)); err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T, s storage.Store) {
		t.Helper()
		for _, c := range []struct {
			name      string
			got, want []string
		}{
			{"devices of north", allDevices(t, s, storage.DeviceFilter{Groups: []string{north}}, 10), []string{dA.ID}},
			{"devices of south", allDevices(t, s, storage.DeviceFilter{Groups: []string{south}}, 10), []string{dB.ID}},
			{"devices assigned to wA", allDevices(t, s, storage.DeviceFilter{AssignedUser: wA.ID}, 10), []string{dA.ID}},
			{"users of north", allUsers(t, s, storage.UserFilter{Groups: []string{north}}, 10), []string{wA.ID}},
			{"users of south", allUsers(t, s, storage.UserFilter{Groups: []string{south}}, 10), []string{wS.ID}},
			{"sessions of north", allSessions(t, s, storage.SessionFilter{Groups: []string{north}}, 10), []string{sA.ID}},
			{"sessions of south", allSessions(t, s, storage.SessionFilter{Groups: []string{south}}, 10), []string{sS.ID}},
			{"codes of south", codeIDs(t, s, storage.CodeFilter{Groups: []string{south}}), []string{code.ID}},
			{"events of north", allEvents(t, s, storage.EventFilter{Groups: []string{north}}, 10), nil},
		} {
			if !slices.Equal(c.got, c.want) {
				t.Fatalf("after the migration, %s: %v; want %v", c.name, c.got, c.want)
			}
		}
		if gs, err := s.HandsetGroups(ctx, mA.ID); err != nil || !slices.Equal(gs, []string{north}) {
			t.Fatalf("after the migration, the manager's handset groups: %q, %v", gs, err)
		}
		after := event("login", wA.ID, "")
		if err := s.AppendEvents(ctx, after); err != nil {
			t.Fatal(err)
		}
		if got := allEvents(t, s, storage.EventFilter{Groups: []string{north}}, 10); !slices.Equal(got, []string{after.ID}) {
			t.Fatalf("after the migration, a new event of north: %v; want %s", got, after.ID)
		}
	}
}
