package bolt

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// GetGroup implements storage.Groups.
func (s *Store) GetGroup(ctx context.Context, name string) (storage.Group, error) {
	var g storage.Group
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketGroups), "group", []byte(name), &g)
	})
	return g, err
}

// ListGroups implements storage.Groups.
func (s *Store) ListGroups(ctx context.Context) ([]storage.Group, error) {
	groups := []storage.Group{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(name, v []byte) error {
			var g storage.Group
			if err := codec.Decode(v, &g); err != nil {
				return fmt.Errorf("decode group %q: %w", name, err)
			}
			groups = append(groups, g)
			return nil
		})
	})
	return groups, err
}

// UpdateGroup implements storage.Groups.
func (s *Store) UpdateGroup(ctx context.Context, name string, fn func(storage.Group) (storage.Group, error), opts ...storage.WriteOption) (storage.Group, error) {
	var updated storage.Group
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		old := storage.Group{Name: name}
		if v := groups.Get([]byte(name)); v != nil {
			if err := codec.Decode(v, &old); err != nil {
				return fmt.Errorf("decode group %q: %w", name, err)
			}
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if next.Name != name {
			return fmt.Errorf("update group %q: the name cannot change", name)
		}
		updated = next.Clone()
		return put(groups, []byte(name), next)
	})
	return updated, err
}

// DeleteGroup implements storage.Groups.
func (s *Store) DeleteGroup(ctx context.Context, name string, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		if groups.Get([]byte(name)) == nil {
			return fmt.Errorf("group %q: %w", name, storage.ErrNotFound)
		}
		return groups.Delete([]byte(name))
	})
}

// DeviceGroups implements storage.Devices, from the devices_by_group
// index: one seek per group.
func (s *Store) DeviceGroups(ctx context.Context) ([]string, error) {
	groups := []string{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDeviceGroup).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("devices_by_group key %q without a device", k)
			}
			g := string(k[:i])
			groups = append(groups, g)
			k, _ = c.Seek(append([]byte(g), 1))
		}
		return nil
	})
	return groups, err
}
