package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testcerts"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/credentials"
)

// TestTailTLSAndToken runs the daemon with TLS and client certificates
// on gRPC and a JWT secret: tail connects with --tls-ca, --tls-cert and
// --token-file, sees only what its token allows, and is refused without
// a token.
func TestTailTLSAndToken(t *testing.T) {
	dir := t.TempDir()
	caKey, ca := tailTestCA(t)
	tailWritePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	tailTestCert(t, ca, caKey, filepath.Join(dir, "server"), x509.ExtKeyUsageServerAuth)
	tailTestCert(t, ca, caKey, filepath.Join(dir, "client"), x509.ExtKeyUsageClientAuth)
	secret := []byte("a-secret-of-at-least-thirty-two-bytes!!")
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": time.Now().Add(time.Hour).Unix(), "services": []string{"allowed"},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(dir+"/client.crt", dir+"/client.key")
	if err != nil {
		t.Fatal(err)
	}
	d := newTailDaemonWith(t, func(cfg string) string {
		cfg = strings.Replace(cfg, "  shutdown_grace: 3s\n", "  shutdown_grace: 3s\n  tls:\n    cert_file: "+dir+"/server.crt\n    key_file: "+dir+"/server.key\n    client_ca_file: "+dir+"/ca.pem\n", 1)
		return cfg + "auth:\n  hmac_secret_file: " + dir + "/secret\n"
	}, credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}))
	d.sendSyslog("allowed", "user.notice", "you may see this")
	d.sendSyslog("secret", "user.notice", "not this")
	tlsArgs := []string{"--server", d.grpc, "--tls-ca", dir + "/ca.pem", "--tls-cert", dir + "/client.crt", "--tls-key", dir + "/client.key", "--tls-server-name", "127.0.0.1"}

	p := startTail(t, append(tlsArgs, "--token-file", dir+"/token", "--no-follow", "--json")...)
	lines := p.read(t, 1, 30*time.Second)
	if got := tailParseJSON(t, lines)[0]; got.Service != "allowed" || got.Message != "you may see this" {
		t.Fatalf("got %+v", got)
	}
	if err := <-p.exited; err != nil {
		t.Fatalf("tail: %v\n%s", err, p.errors())
	}
	for l := range p.lines {
		t.Errorf("more output: %s", l)
	}

	bin, _ := tailBinaries(t)
	out, err := exec.Command(bin, append([]string{"tail"}, tlsArgs...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused the request") || !strings.Contains(string(out), "token") {
		t.Errorf("without a token: %v\n%s", err, out)
	}
}

func tailTestCA(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	ca := testcerts.NewCA(t, "tail test CA")
	return ca.Key, ca.Cert
}

// tailTestCert writes base.crt and base.key for 127.0.0.1, signed by ca.
func tailTestCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, base string, usage x509.ExtKeyUsage) {
	t.Helper()
	(&testcerts.CA{Cert: ca, Key: caKey}).WriteLeaf(t, base+".crt", base+".key", filepath.Base(base), usage)
}

func tailWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	testcerts.WritePEM(t, path, typ, der)
}
