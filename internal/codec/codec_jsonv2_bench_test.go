//go:build goexperiment.jsonv2

package codec

import (
	jsonv1 "encoding/json"
	jsonv2 "encoding/json/v2"
)

func init() {
	benchCodecs = append(benchCodecs,
		recordCodec{"jsonv2-v1opts", func(v any) ([]byte, error) { return jsonv2.Marshal(v, jsonv1.DefaultOptionsV1()) }, func(b []byte, v any) error { return jsonv2.Unmarshal(b, v, jsonv1.DefaultOptionsV1()) }},
		recordCodec{"jsonv2", func(v any) ([]byte, error) { return jsonv2.Marshal(v) }, func(b []byte, v any) error { return jsonv2.Unmarshal(b, v) }},
	)
}
