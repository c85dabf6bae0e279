// Package web is the browser dashboard: static HTML, CSS and JavaScript
// embedded in the binary and served at /. The page opens the WebSocket at
// "ws" relative to its own URL (/ws when served at /), so it also works
// behind a reverse proxy under a sub-path.
//
// The dashboard makes no request outside its origin and works offline.
// Every response carries a Content-Security-Policy that allows only the
// page's own scripts and styles and connections to its own origin, so that
// even a mistake in escaping could not run a log line as script.
//
// Handler is stateless and safe for concurrent use.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type file struct {
	data  []byte
	ctype string
	etag  string
}

// types are the content types of the files shipped (not the system's
// mime.types, which may differ from machine to machine).
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// files maps a request path to its embedded file; "/" is index.html.
var files = func() map[string]file {
	m := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ctype, ok := types[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for its extension", p)
		}
		name := strings.TrimPrefix(p, "static")
		f := file{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		m[name] = f
		if name == "/index.html" {
			m["/"] = f
		}
		return nil
	})
	if err != nil {
		panic("web: embedded files: " + err.Error())
	}
	return m
}()

// Handler serves the dashboard: / and its assets. Any other path is 404.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	f, ok := files[r.URL.Path]
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", f.ctype)
	// Revalidate every time: a new binary serves a new page at once.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(f.data)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.data)
}
