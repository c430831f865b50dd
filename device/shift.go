package device

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"tether"
	"tether/storage"
)

// Limits of a shift schedule.
const (
	MaxBoundaries = 24
	MaxGrace      = 4 * time.Hour
)

// boundary is a local time of day, "15:04".
type boundary struct{ hour, minute int }

func parseBoundary(s string) (boundary, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return boundary{}, fmt.Errorf("%q is not a time of day as HH:MM", s)
	}
	return boundary{t.Hour(), t.Minute()}, nil
}

// CheckShifts validates a shift schedule: a known IANA time zone, one to
// MaxBoundaries distinct boundaries as "HH:MM" in increasing order, a
// grace from zero to MaxGrace. It normalises nothing: the schedule is
// stored as given.
func CheckShifts(s storage.ShiftSchedule) error {
	var errs []*tether.ValidationError
	if s.TimeZone == "" || s.TimeZone == "Local" {
		errs = append(errs, tether.Invalid("shifts.timeZone", "required", "an IANA time zone, such as Europe/Berlin"))
	} else if _, err := time.LoadLocation(s.TimeZone); err != nil {
		errs = append(errs, tether.Invalid("shifts.timeZone", "time_zone", "not a known IANA time zone"))
	}
	if n := len(s.Boundaries); n == 0 || n > MaxBoundaries {
		errs = append(errs, tether.Invalid("shifts.boundaries", "boundaries", fmt.Sprintf("from 1 to %d times of day, as HH:MM", MaxBoundaries)))
	} else {
		prev := -1
		for i, b := range s.Boundaries {
			p, err := parseBoundary(b)
			if err != nil {
				errs = append(errs, tether.Invalid(fmt.Sprintf("shifts.boundaries[%d]", i), "time_of_day", err.Error()))
				continue
			}
			if m := p.hour*60 + p.minute; m <= prev {
				errs = append(errs, tether.Invalid(fmt.Sprintf("shifts.boundaries[%d]", i), "order", "boundaries are distinct and in increasing order within the day"))
			} else {
				prev = m
			}
		}
	}
	if s.Grace < 0 || s.Grace > MaxGrace || s.Grace%time.Minute != 0 {
		errs = append(errs, tether.Invalid("shifts.graceMinutes", "grace", fmt.Sprintf("whole minutes from 0 to %d", int(MaxGrace/time.Minute))))
	}
	if all := tether.Join(errs...); all != nil {
		return all
	}
	return nil
}

// ShiftEnd returns the end of the shift that a session opened at t
// belongs to: the first boundary after t, in the schedule's time zone,
// or the one after it when t falls within the grace before it (a worker
// starting a few minutes early belongs to the shift about to begin).
// Boundaries are wall-clock times: across a change to or from daylight
// saving time a shift is an hour shorter or longer. A boundary that does
// not exist on a day (skipped by the change) is as late on the clock as
// the change makes it: 02:30 on a day that skips from 02:00 to 03:00 is
// 03:30.
func ShiftEnd(s storage.ShiftSchedule, t time.Time) (time.Time, error) {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("shift time zone %q: %w", s.TimeZone, err)
	}
	bs := make([]boundary, 0, len(s.Boundaries))
	for _, b := range s.Boundaries {
		p, err := parseBoundary(b)
		if err != nil {
			return time.Time{}, err
		}
		bs = append(bs, p)
	}
	if len(bs) == 0 {
		return time.Time{}, errors.New("a shift schedule without boundaries")
	}
	// The candidates: every boundary of the day before t to two days
	// after, in t's zone, in time order; the first one past t plus the
	// grace. (A day before, for a boundary an hour's change could move
	// across midnight.)
	local := t.In(loc)
	var ends []time.Time
	for day := -1; day <= 2; day++ {
		y, m, d := local.AddDate(0, 0, day).Date()
		for _, b := range bs {
			ends = append(ends, wallClock(y, m, d, b, loc))
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	from := t.Add(s.Grace)
	for _, e := range ends {
		if e.After(from) {
			return e.UTC(), nil
		}
	}
	return time.Time{}, errors.New("no shift boundary within two days")
}

// wallClock is the instant the clock in loc shows b on the given day. For
// a time the clock skips, it is that time reckoned from before the skip,
// which the clock then shows as b plus the skip (time.Date leaves the
// choice open).
func wallClock(y int, m time.Month, d int, b boundary, loc *time.Location) time.Time {
	e := time.Date(y, m, d, b.hour, b.minute, 0, 0, loc)
	want, got := b.hour*60+b.minute, e.Hour()*60+e.Minute()
	if got == want {
		return e
	}
	diff := want - got
	switch {
	case diff > 12*60:
		diff -= 24 * 60
	case diff < -12*60:
		diff += 24 * 60
	}
	if diff < 0 {
		// time.Date reckoned it from after the skip already.
		return e
	}
	return e.Add(time.Duration(diff) * time.Minute)
}
