package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"tether/storage"
)

var _ storage.Backuper = (*Store)(nil)

// Backup writes the store as of one read transaction: writes keep going
// while it runs, and the copy holds exactly what was committed when it
// began. The copy is a bbolt file like the store itself.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// ErrBadBackup is returned by Verify for a file that is not a whole, sound
// Tether store.
var ErrBadBackup = errors.New("not a sound Tether store")

// Verify checks a store file before it is trusted, as a restore does: it
// opens (read-only), has a schema this build can read, and passes bbolt's
// consistency check. It returns the file's schema version.
func Verify(path string) (uint64, error) {
	db, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: defaultLockWait})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	defer db.Close()
	var version uint64
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		v := meta.Get(keySchemaVersion)
		if len(v) != 8 {
			return errors.New("no schema version")
		}
		version = beUint64(v)
		if version > currentSchemaVers {
			return fmt.Errorf("schema version %d, this build knows up to %d: %w", version, currentSchemaVers, ErrSchemaTooNew)
		}
		for err := range tx.Check() {
			return fmt.Errorf("consistency check: %w", err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrSchemaTooNew) {
			return version, err
		}
		return version, fmt.Errorf("%w: %w", ErrBadBackup, err)
	}
	return version, nil
}

// Restore replaces the store file at path with the backup at from, after
// Verify passes. The old file is kept beside it as path + ".before-restore"
// and the new one is moved into place with a rename, so a crash leaves one
// or the other, never half of each. The store must not be open.
func Restore(from, path string) error {
	if _, err := Verify(from); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".restore-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	src, err := os.Open(from)
	if err != nil {
		return errors.Join(err, tmp.Close())
	}
	_, err = io.Copy(tmp, src)
	err = errors.Join(err, src.Close(), tmp.Chmod(fileMode), tmp.Sync(), tmp.Close())
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		// A running server holds the file's lock: restoring under it would
		// lose what it writes.
		db, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: defaultLockWait})
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return fmt.Errorf("restore %s: %w", path, ErrLocked)
		case err == nil:
			if err := db.Close(); err != nil {
				return err
			}
			// default: an unreadable current file is what a restore is for.
		}
		if err := os.Rename(path, path+".before-restore"); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
