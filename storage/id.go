package storage

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
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

// ids makes IDs that never go backwards within a process: an ID made in the
// same millisecond as the last one is that one plus one, so records made one
// after another list in the order they were made.
var ids struct {
	sync.Mutex
	ms   uint64
	hi   uint16 // top 16 of the 80 random bits
	lo   uint64 // low 64 of the 80 random bits
	init bool
}

// NewID returns prefix followed by 26 characters: 48 bits of the current
// time in milliseconds and 80 bits that are random for the first ID of each
// millisecond and counted up from there, in Crockford base32.
func NewID(prefix string) string {
	return newIDAt(prefix, time.Now())
}

func newIDAt(prefix string, t time.Time) string {
	ms := uint64(t.UnixMilli())
	ids.Lock()
	if !ids.init || ms > ids.ms {
		var r [10]byte
		// crypto/rand.Read never returns an error: it crashes the program
		// rather than hand out weak randomness.
		rand.Read(r[:])
		ids.ms, ids.init = ms, true
		ids.hi = binary.BigEndian.Uint16(r[:2])
		ids.lo = binary.BigEndian.Uint64(r[2:])
	} else {
		// Same millisecond (or the clock stepped back): count up from the
		// last ID, carrying into the top bits.
		ms = ids.ms
		ids.lo++
		if ids.lo == 0 {
			ids.hi++
		}
	}
	hi := ms<<16 | uint64(ids.hi)
	lo := ids.lo
	ids.Unlock()
	return encode(prefix, hi, lo)
}

// encode writes the 128 bits hi:lo (the top two always zero) as 26 five-bit
// digits after prefix.
func encode(prefix string, hi, lo uint64) string {
	out := make([]byte, len(prefix)+26)
	copy(out, prefix)
	for i := len(out) - 1; i >= len(prefix); i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}
