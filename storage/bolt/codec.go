package bolt

import "encoding/json"

// encode and decode are the codec of the stored records, the one place
// that names it: whatever they use must write the very bytes
// encoding/json writes and read what it wrote (codec_test.go), or the
// store needs a migration.
func encode(v any) ([]byte, error) { return json.Marshal(v) }

// decode copies out what it keeps: data may be bbolt's, valid only in its
// transaction.
func decode(data []byte, v any) error { return json.Unmarshal(data, v) }
