package bolt

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

func imeiConflict(imei string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "device", Field: "imei", Value: imei}
}

// CreateDevice implements storage.Devices.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		return createDevice(tx, d)
	})
}

// CreateDevices implements storage.Devices.
func (s *Store) CreateDevices(ctx context.Context, ds []storage.Device, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		for _, d := range ds {
			if err := createDevice(tx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

func createDevice(tx *bolt.Tx, d storage.Device) error {
	devices := tx.Bucket(bucketDevices)
	if devices.Get([]byte(d.ID)) != nil {
		return &storage.ConflictError{Entity: "device", Field: "id", Value: d.ID}
	}
	if err := claim(tx.Bucket(bucketDeviceIMEI), []byte(d.IMEI), d.ID, imeiConflict(d.IMEI)); err != nil {
		return err
	}
	if err := indexDevice(tx, d, true); err != nil {
		return err
	}
	return put(devices, []byte(d.ID), d)
}

// GetDevice implements storage.Devices.
func (s *Store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	var d storage.Device
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketDevices), "device", []byte(id), &d)
	})
	return d, err
}

// GetDeviceByIMEI implements storage.Devices.
func (s *Store) GetDeviceByIMEI(ctx context.Context, imei string) (storage.Device, error) {
	var d storage.Device
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketDeviceIMEI).Get([]byte(imei))
		if id == nil {
			return fmt.Errorf("device with imei %q: %w", imei, storage.ErrNotFound)
		}
		return get(tx.Bucket(bucketDevices), "device", id, &d)
	})
	return d, err
}

// DeviceNames implements storage.Devices: one read transaction, and only
// the IMEI and label of each record decoded.
func (s *Store) DeviceNames(ctx context.Context, ids []string) (map[string]storage.DeviceName, error) {
	out := make(map[string]storage.DeviceName, len(ids))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		devices := tx.Bucket(bucketDevices)
		for _, id := range ids {
			data := devices.Get([]byte(id))
			if data == nil {
				continue
			}
			var d struct {
				IMEI  string `json:"imei"`
				Label string `json:"label"`
			}
			if err := codec.Decode(data, &d); err != nil {
				return fmt.Errorf("decode device %q: %w", id, err)
			}
			out[id] = storage.DeviceName{IMEI: d.IMEI, Label: d.Label}
		}
		return nil
	})
	return out, err
}

// ListDevices implements storage.Devices. A scoped list walks only the
// devices of its groups (devices_by_group).
func (s *Store) ListDevices(ctx context.Context, f storage.DeviceFilter) (storage.Page[storage.Device], error) {
	var page storage.Page[storage.Device]
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		id := func(d storage.Device) string { return d.ID }
		if f.Groups == nil {
			page, err = list(tx.Bucket(bucketDevices), f.After, f.Limit, f.Match, id)
			return err
		}
		page, err = listMerged(tx.Bucket(bucketDevices), groupPrefixes(tx.Bucket(bucketDeviceGroup), f.Groups), f.After, f.Limit, false,
			func(d storage.Device) (bool, error) { return f.Match(d), nil }, id)
		return err
	})
	return page, err
}

// UpdateDevice implements storage.Devices.
func (s *Store) UpdateDevice(ctx context.Context, id string, fn func(storage.Device) (storage.Device, error), opts ...storage.WriteOption) (storage.Device, error) {
	var updated storage.Device
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		devices := tx.Bucket(bucketDevices)
		var old storage.Device
		if err := get(devices, "device", []byte(id), &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckDeviceUpdate(old, next); err != nil {
			return err
		}
		if next.IMEI != old.IMEI {
			idx := tx.Bucket(bucketDeviceIMEI)
			if err := claim(idx, []byte(next.IMEI), id, imeiConflict(next.IMEI)); err != nil {
				return err
			}
			if err := idx.Delete([]byte(old.IMEI)); err != nil {
				return err
			}
		}
		if err := reindexDevice(tx, old, next); err != nil {
			return err
		}
		updated = next.Clone()
		return put(devices, []byte(id), next)
	})
	return updated, err
}
