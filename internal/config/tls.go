package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ServerTLS configures TLS on a listener. It is off while CertFile is
// empty.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain
	KeyFile  string `yaml:"key_file"`  // PEM private key
	// ClientCAFile holds the CAs that sign client certificates; setting it
	// turns client certificates on.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "required" (default when ClientCAFile is set) or
	// "optional": a client without a certificate is let in, one with a
	// bad certificate is refused.
	ClientAuth string `yaml:"client_auth"`
}

// Enabled reports whether TLS is configured.
func (c *ServerTLS) Enabled() bool { return c.CertFile != "" }

// Validate checks the fields; key is the YAML path for errors.
func (c *ServerTLS) Validate(key string) error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%s: cert_file and key_file go together", key)
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		return fmt.Errorf("%s.client_ca_file: needs cert_file and key_file", key)
	}
	switch c.ClientAuth {
	case "", "required", "optional":
	default:
		return fmt.Errorf("%s.client_auth: %q is not required or optional", key, c.ClientAuth)
	}
	return nil
}

// Load reads the files and returns a server tls.Config, or nil when TLS
// is off.
func (c *ServerTLS) Load(key string) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: load key pair: %w", key, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_ca_file: %w", key, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.client_ca_file: %s holds no PEM certificate", key, c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		if c.ClientAuth == "optional" {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return tc, nil
}
