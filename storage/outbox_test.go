package storage_test

import (
	"testing"

	"tether/storage"
)

func TestEventRouteMatch(t *testing.T) {
	login := storage.Event{Action: "login", Outcome: "failure", Groups: []string{"north"}}
	register := storage.Event{Action: "device.register", Outcome: "success"}
	cases := []struct {
		name  string
		route storage.EventRoute
		e     storage.Event
		want  bool
	}{
		{"empty takes all", storage.EventRoute{}, register, true},
		{"exact action", storage.EventRoute{Actions: []string{"login"}}, login, true},
		{"exact is not a prefix", storage.EventRoute{Actions: []string{"log"}}, login, false},
		{"prefix", storage.EventRoute{Actions: []string{"device.*"}}, register, true},
		{"prefix needs the dot", storage.EventRoute{Actions: []string{"dev.*"}}, register, false},
		{"a bare star is no wildcard", storage.EventRoute{Actions: []string{"*"}}, register, false},
		{"prefix of another family", storage.EventRoute{Actions: []string{"device.*"}}, login, false},
		{"outcome", storage.EventRoute{Outcomes: []string{"failure"}}, register, false},
		{"outcome taken", storage.EventRoute{Outcomes: []string{"success", "failure"}}, login, true},
		{"group", storage.EventRoute{Groups: []string{"north"}}, login, true},
		{"group of none", storage.EventRoute{Groups: []string{"north"}}, register, false},
		{"all three", storage.EventRoute{Actions: []string{"login"}, Outcomes: []string{"failure"}, Groups: []string{"south", "north"}}, login, true},
		{"one of three fails", storage.EventRoute{Actions: []string{"login"}, Outcomes: []string{"success"}, Groups: []string{"north"}}, login, false},
	}
	for _, c := range cases {
		if got := c.route.Match(c.e); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	routes := []storage.EventRoute{{Sink: "a"}, {Sink: "b", Outcomes: []string{"success"}}, {Sink: "c", Groups: []string{"north"}}}
	if got := storage.RouteEvent(routes, login); len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Errorf("RouteEvent: %v", got)
	}
}
