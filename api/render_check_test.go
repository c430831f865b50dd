package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Every answer any test of the package provokes is written by the codec
// and by encoding/json, and the two must agree byte for byte (or both
// fail): the codec is taken for answers on that condition. A difference
// fails the answer (the handler panics: a 500) and, whatever the test
// made of that, the run.
var renderDiffs struct {
	sync.Mutex
	seen []string
}

func init() {
	renderCheck = func(v any, data []byte, err error) {
		want, werr := json.Marshal(v)
		if (err == nil) == (werr == nil) && bytes.Equal(data, want) {
			return
		}
		diff := fmt.Sprintf("the codec wrote %T as %.300q (%v); encoding/json writes %.300q (%v)", v, data, err, want, werr)
		renderDiffs.Lock()
		renderDiffs.seen = append(renderDiffs.seen, diff)
		renderDiffs.Unlock()
		panic(diff)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(renderDiffs.seen) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d answers written otherwise than encoding/json writes them; the first: %s\n", len(renderDiffs.seen), renderDiffs.seen[0])
		code = 1
	}
	os.Exit(code)
}
