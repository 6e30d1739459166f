package testenv

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
)

// Mail is one message an SMTP sink received, decoded: its subject and its
// text/plain body.
type Mail struct {
	To      []string
	Subject string
	Text    string
}

// SMTPSink is a mail server on loopback that keeps what it is sent, for a
// test to read: enough SMTP (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, no
// TLS, no AUTH) for Alertmanager's email notifier.
type SMTPSink struct {
	// Addr is where it listens (host:port).
	Addr string
	mu   sync.Mutex
	mail []Mail
}

// StartSMTPSink serves until the test ends.
func StartSMTPSink(tb testing.TB) *SMTPSink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SMTPSink{Addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	tb.Cleanup(func() { _ = ln.Close() })
	return s
}

// Mail is what was received so far.
func (s *SMTPSink) Mail() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mail...)
}

func (s *SMTPSink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	reply("220 sink ESMTP")
	var to []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			reply("250-sink")
			reply("250 8BITMIME")
		case "HELO", "MAIL", "NOOP":
			reply("250 ok")
		case "RSET":
			to = nil
			reply("250 ok")
		case "RCPT":
			to = append(to, strings.Trim(strings.TrimPrefix(strings.TrimSpace(line[len("RCPT TO:"):]), " "), "<>"))
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			s.keep(to, data.String())
			to = nil
			reply("250 kept")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not here")
		}
	}
}

// keep decodes a message (its subject, its text/plain part) and keeps it.
func (s *SMTPSink) keep(to []string, raw string) {
	m := Mail{To: to}
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err == nil {
		m.Subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		m.Text = text(msg.Header.Get("Content-Type"), msg.Body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mail = append(s.mail, m)
}

// text is the text/plain of a body, a multipart one's part decoded.
func text(contentType string, body io.Reader) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		b, _ := io.ReadAll(body)
		return string(b)
	}
	parts := multipart.NewReader(body, params["boundary"])
	for {
		p, err := parts.NextPart()
		if err != nil {
			return ""
		}
		if t, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); t == "text/plain" {
			b, _ := io.ReadAll(p)
			return string(b)
		}
	}
}
