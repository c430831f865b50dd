package bolt

import (
	"context"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

var _ storage.Statser = (*Store)(nil)

// Stats implements storage.Statser. It reads every device (their status is
// inside the record), so callers should cache it rather than ask per
// request.
func (s *Store) Stats(ctx context.Context) (storage.Stats, error) {
	st := storage.Stats{DevicesByStatus: map[storage.DeviceStatus]int{}}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		st.Sessions = tx.Bucket(bucketSessionPair).Stats().KeyN
		st.SizeBytes = tx.Size()
		return tx.Bucket(bucketDevices).ForEach(func(_, v []byte) error {
			var d struct {
				Status storage.DeviceStatus `json:"status"`
			}
			if err := codec.Decode(v, &d); err != nil {
				return err
			}
			st.DevicesByStatus[d.Status]++
			return nil
		})
	})
	if fi, serr := os.Stat(s.db.Path()); serr == nil {
		st.SizeBytes = fi.Size()
	}
	return st, err
}

// TxObserver is told how long each transaction took, and whether it wrote.
type TxObserver func(write bool, d time.Duration)

// WithTxObserver sets a TxObserver, for metrics.
func WithTxObserver(f TxObserver) Option {
	return func(o *options) { o.observe = f }
}
