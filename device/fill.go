package device

import (
	"context"
	"errors"

	"tether/storage"
)

// FillFrom sets the parts a handset's payload leaves out to what the
// handset last reported, as d records it: its Android version, its make and
// model, its app version. ICC IDs are never filled: left out, the handset
// reports none, and the SIM policy judges that.
func (p *Payload) FillFrom(d storage.Device) {
	if p.OSVersion == nil && d.OSAPI != 0 {
		p.OSVersion = &OSVersion{API: d.OSAPI, Name: d.OSName}
	}
	if p.DeviceInfo == nil && d.Manufacturer != "" && d.Model != "" {
		p.DeviceInfo = &Info{Manufacturer: d.Manufacturer, Model: d.Model}
	}
	if p.AppVersion == nil && d.AppVersion != "" {
		v := d.AppVersion
		p.AppVersion = &v
	}
}

// FillFromRecord is FillFrom with the enrolled handset whose IMEI p names,
// for clients whose documents make every field optional: a handset that
// reported itself before may leave out what has not changed. A payload
// whose parts are all there, or whose IMEI names no handset, is left as it
// is (validation then names what is missing).
func (s *Service) FillFromRecord(ctx context.Context, p *Payload) error {
	if p.OSVersion != nil && p.DeviceInfo != nil && p.AppVersion != nil {
		return nil
	}
	d, err := s.store.GetDeviceByIMEI(ctx, stripSeparators(p.IMEI))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	p.FillFrom(d)
	return nil
}
