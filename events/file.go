package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileSender appends each event as one line of JSON (the CloudEvent) to a
// file, for log shippers to follow, and synchronises the file before it
// reports the events delivered. Past MaxBytes the file is rotated: path
// becomes path.1, path.1 path.2 … up to Keep files; the oldest goes. (Vector
// and Fluent Bit follow a file across such renames.)
type fileSender struct {
	path     string
	maxBytes int64
	keep     int
	f        *os.File
	size     int64
}

const fileMode = fs.FileMode(0o600)

func newFile(s Sink) (*fileSender, error) {
	x := &fileSender{path: s.Path, maxBytes: s.MaxBytes, keep: s.Keep}
	if err := x.open(); err != nil {
		return nil, fmt.Errorf("sink %q: %w", s.Name, err)
	}
	return x, nil
}

// open opens the file to append to. A last line left unfinished (a write
// that failed half way, a crash) is ended first, so the next event starts
// a line of its own and readers skip one broken line.
func (x *fileSender) open() error {
	f, err := os.OpenFile(x.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return errors.Join(err, f.Close())
	}
	size := st.Size()
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			return errors.Join(err, f.Close())
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return errors.Join(err, f.Close())
			}
			size++
		}
	}
	x.f, x.size = f, size
	return nil
}

func (x *fileSender) Target() string { return "file://" + filepath.ToSlash(x.path) }

func (x *fileSender) Close() error {
	if x.f == nil {
		return nil
	}
	err := x.f.Close()
	x.f = nil
	return err
}

// rotate moves the files one place up and opens a new one.
func (x *fileSender) rotate() error {
	if err := x.Close(); err != nil {
		return err
	}
	for i := x.keep - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", x.path, i)
		if err := os.Rename(from, fmt.Sprintf("%s.%d", x.path, i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if x.keep > 0 {
		if err := os.Rename(x.path, x.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else if err := os.Remove(x.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return x.open()
}

// Send writes the events and synchronises the file.
func (x *fileSender) Send(_ context.Context, events []CloudEvent) (int, error) {
	if x.f == nil {
		if err := x.open(); err != nil {
			return 0, fmt.Errorf("file: %w", err)
		}
	}
	var lines bytes.Buffer
	for i, ce := range events {
		line, err := ce.encode()
		if err != nil {
			if i == 0 {
				return 0, &PermanentError{err}
			}
			events = events[:i]
			break
		}
		lines.Write(line)
		lines.WriteByte('\n')
	}
	if x.size > 0 && x.size+int64(lines.Len()) > x.maxBytes {
		if err := x.rotate(); err != nil {
			return 0, fmt.Errorf("file: rotate: %w", err)
		}
	}
	n, err := x.f.Write(lines.Bytes())
	x.size += int64(n)
	if err == nil {
		err = x.f.Sync()
	}
	if err != nil {
		// The next attempt reopens the file, ending a line half written.
		x.Close()
		return 0, fmt.Errorf("file: %w", err)
	}
	return len(events), nil
}
