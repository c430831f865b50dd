package storage

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// Record ID prefixes.
const (
	PrefixDevice = "dev_"
	PrefixUser   = "usr_"
	PrefixAPIKey = "ak_"
)

// crockford is Crockford's base32 alphabet: no I, L, O or U, and its order
// is the order of the values, so IDs sort like the times they encode.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns prefix followed by 26 characters: 48 bits of the current
// time in milliseconds and 80 random bits, Crockford base32. IDs made in
// different milliseconds sort by time; within one they are random.
func NewID(prefix string) string {
	return newIDAt(prefix, time.Now())
}

func newIDAt(prefix string, t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	// crypto/rand.Read never returns an error: it crashes the program rather
	// than hand out weak randomness.
	rand.Read(b[6:])

	// 128 bits, the top two always zero, as 26 five-bit digits.
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	out := make([]byte, len(prefix)+26)
	copy(out, prefix)
	for i := len(out) - 1; i >= len(prefix); i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}
