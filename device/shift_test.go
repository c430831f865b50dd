package device

import (
	"errors"
	"testing"
	"time"

	"tether"
	"tether/storage"
)

func TestShiftEnd(t *testing.T) {
	berlin := storage.ShiftSchedule{TimeZone: "Europe/Berlin", Boundaries: []string{"06:00", "14:00", "22:00"}, Grace: 15 * time.Minute}
	noGrace := berlin
	noGrace.Grace = 0
	newYork := storage.ShiftSchedule{TimeZone: "America/New_York", Boundaries: []string{"02:30", "14:30"}}
	midnight := storage.ShiftSchedule{TimeZone: "Asia/Tokyo", Boundaries: []string{"00:00"}, Grace: 30 * time.Minute}
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		sched storage.ShiftSchedule
		at    string
		want  string
	}{
		{"mid shift", berlin, "2026-06-10T08:00:00Z", "2026-06-10T12:00:00Z"}, // 10:00 CEST → 14:00 CEST
		{"just before the grace", berlin, "2026-06-10T11:44:00Z", "2026-06-10T12:00:00Z"},
		{"within the grace: the next shift", berlin, "2026-06-10T11:50:00Z", "2026-06-10T20:00:00Z"},
		{"at the boundary, no grace", noGrace, "2026-06-10T12:00:00Z", "2026-06-10T20:00:00Z"},
		{"night shift over midnight", berlin, "2026-06-10T21:00:00Z", "2026-06-11T04:00:00Z"}, // 23:00 → 06:00 CEST
		// Into summer time: the night of 28 to 29 March 2026 loses an
		// hour, so the night shift, 22:00 CET to 06:00 CEST, lasts 7 hours.
		{"night shift into summer time", berlin, "2026-03-28T22:00:00Z", "2026-03-29T04:00:00Z"},
		// Out of it: 24 to 25 October 2026 gains one, 9 hours.
		{"night shift out of summer time", berlin, "2026-10-24T21:00:00Z", "2026-10-25T05:00:00Z"},
		{"morning after the change", berlin, "2026-03-29T05:00:00Z", "2026-03-29T12:00:00Z"},
		// 02:30 does not exist in New York on 8 March 2026: the boundary
		// falls an hour later, at 03:30 EDT.
		{"a boundary the change skips", newYork, "2026-03-08T05:00:00Z", "2026-03-08T07:30:00Z"},
		{"the day after", newYork, "2026-03-09T05:00:00Z", "2026-03-09T06:30:00Z"},
		{"one boundary a day", midnight, "2026-06-10T03:00:00Z", "2026-06-10T15:00:00Z"},
		{"one boundary a day, within the grace", midnight, "2026-06-10T14:40:00Z", "2026-06-11T15:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ShiftEnd(tt.sched, utc(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			if want := utc(tt.want); !got.Equal(want) {
				t.Fatalf("ShiftEnd(%s) = %s; want %s", tt.at, got.Format(time.RFC3339), want.Format(time.RFC3339))
			}
		})
	}
}

func TestCheckShifts(t *testing.T) {
	good := storage.ShiftSchedule{TimeZone: "Europe/Berlin", Boundaries: []string{"06:00", "14:00", "22:00"}, Grace: 15 * time.Minute}
	if err := CheckShifts(good); err != nil {
		t.Fatalf("CheckShifts(%+v) = %v", good, err)
	}
	many := make([]string, MaxBoundaries+1)
	for i := range many {
		many[i] = time.Date(0, 1, 1, 0, i*2, 0, 0, time.UTC).Format("15:04")
	}
	tests := []struct {
		name  string
		edit  func(*storage.ShiftSchedule)
		field string
	}{
		{"no zone", func(s *storage.ShiftSchedule) { s.TimeZone = "" }, "shifts.timeZone"},
		{"the server's zone", func(s *storage.ShiftSchedule) { s.TimeZone = "Local" }, "shifts.timeZone"},
		{"unknown zone", func(s *storage.ShiftSchedule) { s.TimeZone = "Mars/Olympus" }, "shifts.timeZone"},
		{"a path for a zone", func(s *storage.ShiftSchedule) { s.TimeZone = "../../etc/passwd" }, "shifts.timeZone"},
		{"no boundaries", func(s *storage.ShiftSchedule) { s.Boundaries = nil }, "shifts.boundaries"},
		{"too many boundaries", func(s *storage.ShiftSchedule) { s.Boundaries = many }, "shifts.boundaries"},
		{"not a time", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"06:00", "noon"} }, "shifts.boundaries[1]"},
		{"hour 24", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"24:00"} }, "shifts.boundaries[0]"},
		{"one digit", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"6:00"} }, "shifts.boundaries[0]"},
		{"seconds", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"06:00:00"} }, "shifts.boundaries[0]"},
		{"out of order", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"14:00", "06:00"} }, "shifts.boundaries[1]"},
		{"twice", func(s *storage.ShiftSchedule) { s.Boundaries = []string{"06:00", "06:00"} }, "shifts.boundaries[1]"},
		{"negative grace", func(s *storage.ShiftSchedule) { s.Grace = -time.Minute }, "shifts.graceMinutes"},
		{"grace too long", func(s *storage.ShiftSchedule) { s.Grace = MaxGrace + time.Second }, "shifts.graceMinutes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			s.Boundaries = append([]string(nil), good.Boundaries...)
			tt.edit(&s)
			var verr *tether.ValidationError
			if err := CheckShifts(s); !errors.As(err, &verr) || verr.Fields[0].Field != tt.field {
				t.Fatalf("CheckShifts(%+v) = %v; want a validation error on %s", s, err, tt.field)
			}
		})
	}
}
