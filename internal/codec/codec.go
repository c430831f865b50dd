// Package codec is how Tether reads and writes the JSON it writes itself:
// both stores' records, its answers, and the claims of its own tokens read
// back before the session vouches for them. It writes the bytes encoding/json
// writes, by goccy/go-json, which reads and writes them in a fifth to a
// third of the time (BenchmarkCodec), and is the one place that names the
// codec. The tests hold it to encoding/json's bytes, hostile strings,
// omitzero and all, both ways, so a store written by one build reads the
// same in another with no migration; a codec that could not keep to those
// bytes would need one. The API writes its answers with it too, each
// answer its tests provoke checked against encoding/json's bytes
// (api/render_check_test.go); what clients send is not read with it.
package codec

import (
	"bytes"

	"github.com/goccy/go-json"
)

// Encode writes v as encoding/json would.
func Encode(v any) ([]byte, error) { return json.Marshal(v) }

// EncodeTo appends to buf what Encode returns for v, without the new slice
// Encode makes for it: an answer of a page of handsets (some 35 KB) is
// written into a buffer that is used again, rather than into a fresh
// large allocation. On an error buf is as it was.
func EncodeTo(buf *bytes.Buffer, v any) error {
	n := buf.Len()
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		buf.Truncate(n)
		return err
	}
	buf.Truncate(buf.Len() - 1) // the Encoder's newline
	return nil
}

// Decode reads data into v as encoding/json would, and copies out what it
// keeps (strings, raw JSON, bytes): data may be bbolt's, valid only in its
// transaction.
func Decode(data []byte, v any) error { return json.Unmarshal(data, v) }
