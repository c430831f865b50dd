package bolt

import "github.com/goccy/go-json"

// encode and decode are the codec of the stored records, the one place
// that names it. goccy/go-json writes the very bytes encoding/json writes
// and reads what it wrote, hostile strings, omitzero and all
// (codec_test.go holds it to that), so a store needs no migration either
// way; it decodes and encodes them in a fifth to a third of the time
// (BenchmarkCodec), and decoding records is most of what a page of a
// list costs. A codec that could not keep to those bytes would need a
// migration.
func encode(v any) ([]byte, error) { return json.Marshal(v) }

// decode copies out what it keeps (strings, raw JSON, bytes), as
// encoding/json does: data may be bbolt's, valid only in its transaction.
func decode(data []byte, v any) error { return json.Unmarshal(data, v) }
