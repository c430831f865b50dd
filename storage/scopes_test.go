package storage_test

import (
	"slices"
	"testing"

	"tether/storage"
)

// TestScopeRules: the scope rules on single records, the definitions every
// backend's query implements.
func TestScopeRules(t *testing.T) {
	worker := storage.User{ID: "usr_w", Role: storage.RoleWorker, Scopes: []string{"south"}}
	manager := storage.User{ID: "usr_m", Role: storage.RoleManager, Scopes: []string{"north"}}
	for _, c := range []struct {
		name string
		got  bool
		want bool
	}{
		{"a group in nil", storage.InGroups("north", nil), true},
		{"no group in nil", storage.InGroups("", nil), true},
		{"a group in empty", storage.InGroups("north", []string{}), false},
		{"a group in its own", storage.InGroups("north", []string{"south", "north"}), true},
		{"a group in another", storage.InGroups("north", []string{"south"}), false},
		{"no group in the empty name", storage.InGroups("", []string{""}), false},
		{"a NUL name in itself", storage.InGroups("a\x00b", []string{"a\x00b"}), false},
		{"a worker by own scopes", storage.UserInScope(worker, nil, []string{"south"}), true},
		{"a worker by a handset", storage.UserInScope(worker, []string{"north"}, []string{"north"}), true},
		{"a worker elsewhere", storage.UserInScope(worker, []string{"north"}, []string{"depot"}), false},
		{"a worker in nil", storage.UserInScope(worker, nil, nil), true},
		{"a worker in empty", storage.UserInScope(worker, []string{"south"}, []string{}), false},
		{"a manager by own scopes", storage.UserInScope(manager, nil, []string{"north"}), false},
		{"a manager by a handset", storage.UserInScope(manager, []string{"north"}, []string{"north"}), false},
		{"a manager in nil", storage.UserInScope(manager, nil, nil), true},
		{"a session by its handset", storage.SessionInScope(storage.Session{UserID: "usr_m", DeviceID: "dev_1"}, "north", manager, nil, []string{"north"}), true},
		{"a session by its worker", storage.SessionInScope(storage.Session{UserID: "usr_w"}, "", worker, nil, []string{"south"}), true},
		{"a session without a handset and a group given", storage.SessionInScope(storage.Session{UserID: "usr_m"}, "north", manager, nil, []string{"north"}), false},
		{"a session with another's user", storage.SessionInScope(storage.Session{UserID: "usr_x"}, "", worker, nil, []string{"south"}), false},
		{"an event of its group", storage.EventInScope(storage.Event{Groups: []string{"north", "south"}}, []string{"south"}), true},
		{"an event of none", storage.EventInScope(storage.Event{}, []string{"south"}), false},
		{"an event of none in nil", storage.EventInScope(storage.Event{}, nil), true},
		{"a code of its group", storage.CodeInScope(storage.EnrollmentCode{Group: "north"}, []string{"north"}), true},
		{"a code of no group", storage.CodeInScope(storage.EnrollmentCode{}, []string{"north"}), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}

	for _, c := range []struct {
		name          string
		e             storage.Event
		device        string
		user          storage.User
		handsetGroups []string
		want          []string
	}{
		{"nothing", storage.Event{}, "", storage.User{}, nil, nil},
		{"the handset", storage.Event{DeviceID: "dev_1"}, "north", storage.User{}, nil, []string{"north"}},
		{"a worker", storage.Event{UserID: "usr_w"}, "", worker, []string{"north", "", "north"}, []string{"north", "south"}},
		{"a manager", storage.Event{UserID: "usr_m"}, "", manager, []string{"depot"}, nil},
		{"given, and the handset", storage.Event{Groups: []string{"z", "", "a\x00"}}, "north", manager, nil, []string{"north", "z"}},
	} {
		if got := storage.EventGroups(c.e, c.device, c.user, c.handsetGroups); !slices.Equal(got, c.want) {
			t.Errorf("EventGroups, %s: got %q; want %q", c.name, got, c.want)
		}
	}

	// Every filter: nil keeps all, empty none.
	d := storage.Device{Group: "north"}
	e := storage.Event{Groups: []string{"north"}}
	for _, c := range []struct {
		groups []string
		want   bool
	}{{nil, true}, {[]string{}, false}, {[]string{"north"}, true}, {[]string{"south"}, false}} {
		if got := (storage.DeviceFilter{Groups: c.groups}).Match(d); got != c.want {
			t.Errorf("DeviceFilter{Groups: %q}.Match: %v", c.groups, got)
		}
		if got := (storage.UserFilter{Groups: c.groups}).Match(storage.User{ID: "usr_v", Role: storage.RoleWorker}, []string{"north"}); got != c.want {
			t.Errorf("UserFilter{Groups: %q}.Match: %v", c.groups, got)
		}
		if got := (storage.SessionFilter{Groups: c.groups}).Match(storage.Session{UserID: "usr_m", DeviceID: "dev_1"}, "north", manager, nil); got != c.want {
			t.Errorf("SessionFilter{Groups: %q}.Match: %v", c.groups, got)
		}
		if got := (storage.EventFilter{Groups: c.groups}).Match(e); got != c.want {
			t.Errorf("EventFilter{Groups: %q}.Match: %v", c.groups, got)
		}
		if got := (storage.CodeFilter{Groups: c.groups}).Match(storage.EnrollmentCode{Group: "north"}); got != c.want {
			t.Errorf("CodeFilter{Groups: %q}.Match: %v", c.groups, got)
		}
	}
}
