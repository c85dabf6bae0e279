package syslog

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testcerts"

	"github.com/logstream/logstream/internal/config"
)

// pki is a CA with a server and a client certificate, written to files.
type pki struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	client                    tls.Certificate
	other                     tls.Certificate // signed by another CA
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := makeCA(t, "logstream test CA")
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	srvKey, srvDER := makeLeaf(t, caKey, caCert, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.certFile = writePEM(t, dir, "server.pem", "CERTIFICATE", srvDER)
	kb, _ := x509.MarshalECPrivateKey(srvKey)
	p.keyFile = writePEM(t, dir, "server.key", "EC PRIVATE KEY", kb)
	cliKey, cliDER := makeLeaf(t, caKey, caCert, "client1", x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	otherKey, otherCert, _ := makeCA(t, "rogue CA")
	rk, rDER := makeLeaf(t, otherKey, otherCert, "rogue", x509.ExtKeyUsageClientAuth)
	p.other = tls.Certificate{Certificate: [][]byte{rDER}, PrivateKey: rk}
	return p
}

func makeCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	ca := testcerts.NewCA(t, cn)
	return ca.Key, ca.Cert, ca.DER
}

func makeLeaf(t testing.TB, caKey *ecdsa.PrivateKey, ca *x509.Certificate, cn string, usage x509.ExtKeyUsage) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	return (&testcerts.CA{Cert: ca, Key: caKey}).Leaf(t, cn, usage)
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	testcerts.WritePEM(t, p, typ, der)
	return p
}

func tlsL(p *pki, clientAuth string) Listener {
	l := Listener{Name: "tls", Protocol: ProtoTLS, Address: "127.0.0.1:0",
		TLS: config.ServerTLS{CertFile: p.certFile, KeyFile: p.keyFile}}
	if clientAuth != "" {
		l.TLS.ClientCAFile, l.TLS.ClientAuth = p.caFile, clientAuth
	}
	return l
}

func tlsDial(p *pki, addr string, cert *tls.Certificate) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	_, rerr := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	if ne, ok := rerr.(net.Error); !ok || !ne.Timeout() {
		c.Close()
		return nil, rerr
	}
	return c, nil
}

// TestTLSClientCertificates: required client certificates refuse a
// client without one or with one from another CA; optional ones let a
// client without in.
func TestTLSClientCertificates(t *testing.T) {
	p := newPKI(t)
	sink := &memSink{}
	r := start(t, testConfig(tlsL(p, "required"), func() Listener { l := tlsL(p, "optional"); l.Name = "tls-opt"; return l }()), sink)

	c, err := tlsDial(p, r.addr(0), &p.client)
	if err != nil {
		t.Fatalf("client with certificate refused: %v", err)
	}
	write(t, c, "<13>1 - host app - - - with cert\n")
	c.Close()
	if _, err := tlsDial(p, r.addr(0), nil); err == nil {
		t.Fatal("client without certificate accepted where required")
	}
	if _, err := tlsDial(p, r.addr(0), &p.other); err == nil {
		t.Fatal("client with a certificate from another CA accepted")
	}
	c, err = tlsDial(p, r.addr(1), nil)
	if err != nil {
		t.Fatalf("client without certificate refused where optional: %v", err)
	}
	write(t, c, "<13>1 - host app - - - optional\n")
	c.Close()
	r.waitStats(t, 0, "handshake failures counted", func(s Stats) bool { return s.Closed[CloseHandshake] == 2 })
	waitFor(t, "2 entries", func() bool { return sink.len() == 2 })
	msgs := map[string]bool{}
	for _, e := range sink.all() {
		msgs[e.Message] = true
	}
	if !msgs["with cert"] || !msgs["optional"] {
		t.Fatalf("entries %v", msgs)
	}
}

// TestTLSStalledHandshakes: 100 connections that never start the
// handshake do not delay a real client, and are closed after the
// handshake timeout.
func TestTLSStalledHandshakes(t *testing.T) {
	p := newPKI(t)
	sink := &memSink{}
	cfg := testConfig(tlsL(p, "required"))
	cfg.HandshakeTimeout = 5 * time.Second
	r := start(t, cfg, sink)
	for range 100 {
		dial(t, "tcp", r.addr(0)) // connects, sends nothing
	}
	r.waitStats(t, 0, "100 stalled connections open", func(s Stats) bool { return s.ConnsOpen == 100 })
	begin := time.Now()
	c, err := tlsDial(p, r.addr(0), &p.client)
	if err != nil {
		t.Fatalf("real client: %v", err)
	}
	// Served one after another, the stalled ones would hold it for 100 ×
	// 5 s; even behind one it would wait 5 s.
	if d := time.Since(begin); d > 2500*time.Millisecond {
		t.Fatalf("real client's handshake took %v behind stalled ones", d)
	}
	t.Logf("real client's handshake behind 100 stalled ones: %v", time.Since(begin).Round(time.Millisecond))
	write(t, c, "<13>1 - host app - - - through\n")
	waitFor(t, "entry", func() bool { return sink.len() == 1 })
	c.Close()
	r.waitStats(t, 0, "stalled connections closed by the handshake timeout", func(s Stats) bool {
		return s.Closed[CloseHandshake] == 100 && s.ConnsOpen == 0
	})
}

// TestWrongProtocol: TLS to the plain port and plain text to the TLS port
// are refused and counted, and produce no entry.
func TestWrongProtocol(t *testing.T) {
	p := newPKI(t)
	sink := &memSink{}
	r := start(t, testConfig(tcpL(), tlsL(p, "")), sink)

	// TLS ClientHello to the plain port.
	_, err := tlsDial(p, r.addr(0), nil)
	if err == nil {
		t.Fatal("TLS handshake succeeded on the plain port")
	}
	r.waitStats(t, 0, "wrong protocol counted", func(s Stats) bool { return s.Closed[CloseWrongProtocol] == 1 })
	// Plain syslog to the TLS port.
	c := dial(t, "tcp", r.addr(1))
	write(t, c, "<13>1 - host app - - - plain text to tls\n")
	r.waitStats(t, 1, "handshake failure counted", func(s Stats) bool { return s.Closed[CloseHandshake] == 1 })
	// HTTP to the plain port.
	c = dial(t, "tcp", r.addr(0))
	write(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r.waitStats(t, 0, "http counted", func(s Stats) bool { return s.Closed[CloseWrongProtocol] == 2 })
	// The listeners still work.
	c = dial(t, "tcp", r.addr(0))
	write(t, c, "<13>1 - host app - - - fine\n")
	waitFor(t, "entry", func() bool { return sink.len() == 1 })
	for _, e := range sink.all() {
		if e.Message != "fine" {
			t.Fatalf("unexpected entry %s", e.AppendJSON(nil))
		}
	}
	for _, st := range r.Stats() {
		if st.Received != st.Published {
			t.Fatalf("%+v", st)
		}
	}
}
