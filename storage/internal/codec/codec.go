// Package codec is how both stores write their records as JSON: the bytes
// encoding/json writes, by goccy/go-json, which reads and writes them in a
// fifth to a third of the time (BenchmarkCodec). It is the one place that
// names the codec. The tests hold it to encoding/json's bytes, hostile
// strings, omitzero and all, both ways, so a store written by one build
// reads the same in another with no migration; a codec that could not keep
// to those bytes would need one.
package codec

import "github.com/goccy/go-json"

// Encode writes v as encoding/json would.
func Encode(v any) ([]byte, error) { return json.Marshal(v) }

// Decode reads data into v as encoding/json would, and copies out what it
// keeps (strings, raw JSON, bytes): data may be bbolt's, valid only in its
// transaction.
func Decode(data []byte, v any) error { return json.Unmarshal(data, v) }
