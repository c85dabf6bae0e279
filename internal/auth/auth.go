// Package auth verifies the JWT bearer tokens of WebSocket and gRPC
// clients and turns their claims into the bus.Filter scope a client may
// see. It is shared by the delivery packages; it holds no state beyond
// its keys and is safe for concurrent use.
//
// A token is a JWT signed with HS256/384/512 (shared secret) or
// RS*/ES*/EdDSA (public key). Its claims:
//
//	{"sub": "alice", "exp": 1767225600,
//	 "hosts": ["web1", "web*"],     // optional: hosts the client may see
//	 "services": ["nginx"],         // optional: services it may see
//	 "level": "warning"}            // optional: the least severe level it may see
//
// An absent claim allows everything on that axis. The server intersects
// the scope with the client's own filter (bus.Filter.Scope).
package auth

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/logstream/logstream/bus"
)

// Config is the auth section of the daemon's configuration. With no key
// configured, clients need no token.
type Config struct {
	// HMACSecretFile holds the shared secret for HS256/384/512 tokens.
	HMACSecretFile string `yaml:"hmac_secret_file"`
	// PublicKeyFile holds a PEM public key (RSA, ECDSA or Ed25519).
	PublicKeyFile string `yaml:"public_key_file"`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway tolerated on exp/nbf. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
}

// Errors returned by Verify.
var (
	ErrNoToken  = errors.New("auth: a bearer token is required")
	ErrBadToken = errors.New("auth: invalid token")
)

// Claims are the token's claims that logstream reads.
type Claims struct {
	jwt.RegisteredClaims
	Hosts    []string `json:"hosts,omitempty"`
	Services []string `json:"services,omitempty"`
	Level    string   `json:"level,omitempty"`
}

// Verifier checks tokens.
type Verifier struct {
	cfg    Config
	secret []byte
	pub    crypto.PublicKey
	parser *jwt.Parser
}

// New loads the configured keys. A Verifier with no key accepts every
// request without a token (Enabled reports false).
func New(cfg Config) (*Verifier, error) {
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	v := &Verifier{cfg: cfg}
	var methods []string
	if cfg.HMACSecretFile != "" {
		b, err := os.ReadFile(cfg.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.hmac_secret_file: %w", err)
		}
		v.secret = []byte(strings.TrimSpace(string(b)))
		if len(v.secret) < 32 {
			return nil, fmt.Errorf("auth.hmac_secret_file: the secret is %d bytes; use at least 32", len(v.secret))
		}
		methods = append(methods, "HS256", "HS384", "HS512")
	}
	if cfg.PublicKeyFile != "" {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.public_key_file: %w", err)
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
			v.pub = k
			methods = append(methods, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
		} else if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
			v.pub = k
			methods = append(methods, "ES256", "ES384", "ES512")
		} else if k, err := jwt.ParseEdPublicKeyFromPEM(b); err == nil {
			v.pub = k
			methods = append(methods, "EdDSA")
		} else {
			return nil, fmt.Errorf("auth.public_key_file: %s holds no RSA, ECDSA or Ed25519 public key", cfg.PublicKeyFile)
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(cfg.Leeway), jwt.WithExpirationRequired()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Enabled reports whether tokens are required.
func (v *Verifier) Enabled() bool { return v != nil && (v.secret != nil || v.pub != nil) }

// Verify checks a token (with or without a "Bearer " prefix) and returns
// the scope its claims allow. With auth disabled it returns nil, nil.
func (v *Verifier) Verify(token string) (*bus.Filter, error) {
	if !v.Enabled() {
		return nil, nil
	}
	token = strings.TrimSpace(token)
	if t, ok := strings.CutPrefix(token, "Bearer "); ok {
		token = strings.TrimSpace(t)
	}
	if token == "" {
		return nil, ErrNoToken
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if strings.HasPrefix(t.Method.Alg(), "HS") {
			if v.secret == nil {
				return nil, errors.New("no HMAC secret configured")
			}
			return v.secret, nil
		}
		if v.pub == nil {
			return nil, errors.New("no public key configured")
		}
		return v.pub, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	scope := &bus.Filter{Hosts: c.Hosts, Services: c.Services}
	if c.Level != "" {
		l, err := bus.ParseLevel(c.Level)
		if err != nil {
			return nil, fmt.Errorf("%w: level claim: %v", ErrBadToken, err)
		}
		scope.Levels = bus.LevelsUpTo(l)
	}
	return scope, nil
}
