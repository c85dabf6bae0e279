package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	cases := []struct {
		path, ctype string
		status      int
		contains    string
	}{
		{"/", "text/html; charset=utf-8", 200, `<script src="app.js" defer></script>`},
		{"/index.html", "text/html; charset=utf-8", 200, "<title>logstream</title>"},
		{"/app.js", "text/javascript; charset=utf-8", 200, "textContent"},
		{"/style.css", "text/css; charset=utf-8", 200, "--bg"},
		{"/favicon.svg", "image/svg+xml", 200, "<svg"},
		{"/nope", "text/plain; charset=utf-8", 404, "not found"},
		{"/static/app.js", "text/plain; charset=utf-8", 404, "not found"},
	}
	for _, c := range cases {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %q, want %d %q containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status, c.ctype, c.contains)
		}
		if resp.Header.Get("Content-Security-Policy") != CSP || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers %v", c.path, resp.Header)
		}
	}

	// Revalidation with the ETag.
	resp, err := http.Get(srv.URL + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	req, _ := http.NewRequest("GET", srv.URL+"/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if etag == "" || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: %d", etag, resp.StatusCode)
	}
	resp, err = http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: %d", resp.StatusCode)
	}
}

// TestOffline checks that the page names no resource outside its origin
// and never builds HTML from strings (the browser test checks the same
// at run time).
func TestOffline(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:|//)`)
	unsafe := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		if strings.HasSuffix(p, ".svg") {
			s = strings.ReplaceAll(s, `xmlns="http://www.w3.org/2000/svg"`, "") // a namespace, not a request
		}
		if m := external.FindString(s); m != "" {
			t.Errorf("%s refers to %q outside the origin", p, m)
		}
		if strings.HasSuffix(p, ".js") {
			if m := unsafe.FindString(s); m != "" {
				t.Errorf("%s uses %s", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
