package api

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// A body over the limit is refused from its Content-Length, before it is
// read (413). Closing the connection then, with the rest of the body unread
// in the socket, makes the kernel reset it, and most clients still sending
// the body (Node's fetch, Python's requests, curl) report the reset rather
// than the answer that was sent. So a connection refused that way lingers
// after the answer: its sending half is shut, and what the client still
// sends is read and dropped, up to lingerBytes or lingerTime, whichever
// comes first; then it closes. At most maxLingering connections linger at
// once; beyond that they close at once.
const (
	lingerTime   = 5 * time.Second
	lingerBytes  = 64 << 20
	maxLingering = 64
)

// Listener wraps ln so that connections refused for their body's size
// linger before they close (see above). Serve the app through it.
func Listener(ln net.Listener) net.Listener {
	return &lingerListener{Listener: ln, slots: make(chan struct{}, maxLingering)}
}

type lingerListener struct {
	net.Listener
	slots chan struct{}
}

func (l *lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c, slots: l.slots}, nil
}

// lingerConn is a connection that can be told to linger when it closes.
type lingerConn struct {
	net.Conn
	slots  chan struct{}
	linger atomic.Bool
}

// lingerOnClose makes Close linger.
func (c *lingerConn) lingerOnClose() { c.linger.Store(true) }

func (c *lingerConn) Close() error {
	if !c.linger.Load() {
		return c.Conn.Close()
	}
	select {
	case c.slots <- struct{}{}:
	default:
		return c.Conn.Close()
	}
	// The answer is written: end the sending half, so the client sees it
	// whole, and drain what it still sends.
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // closing anyway
	}
	go func() {
		defer func() { <-c.slots }()
		c.Conn.SetReadDeadline(time.Now().Add(lingerTime)) //nolint:errcheck // the read fails the same
		io.CopyN(io.Discard, c.Conn, lingerBytes)          //nolint:errcheck // any end will do
		c.Conn.Close()
	}()
	return nil
}

// lingerer is what a lingering connection answers to.
type lingerer interface{ lingerOnClose() }
