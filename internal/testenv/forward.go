package testenv

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// Forwarder relays the connections made to a Unix socket to a target, from
// Start to Stop: a backend (PostgreSQL, a Docker engine) that is away, then
// comes, then goes again, without touching the real one.
type Forwarder struct {
	tb              testing.TB
	path            string
	network, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

// NewForwarder makes a Forwarder of the socket at path to target; nothing
// listens until Start. It stops when the test ends.
func NewForwarder(tb testing.TB, path, network, target string) *Forwarder {
	f := &Forwarder{tb: tb, path: path, network: network, target: target, conns: map[net.Conn]bool{}}
	tb.Cleanup(f.Stop)
	return f
}

// Start listens and relays.
func (f *Forwarder) Start() {
	f.tb.Helper()
	_ = os.Remove(f.path)
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		f.tb.Fatalf("forwarder: %v", err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.relay(c)
		}
	}()
}

func (f *Forwarder) relay(c net.Conn) {
	up, err := net.Dial(f.network, f.target)
	if err != nil {
		c.Close()
		return
	}
	if !f.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	f.untrack(c, up)
}

func (f *Forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.conns[c] = true
	}
	return true
}

func (f *Forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(f.conns, c)
	}
}

// Stop stops listening and cuts every relayed connection.
func (f *Forwarder) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
	_ = os.Remove(f.path)
}
