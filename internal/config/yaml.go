package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode decodes YAML data onto out, which holds the defaults: keys that
// are absent keep them. Unknown keys and values of the wrong type are
// errors naming the line. It returns the document's node tree, for
// KeyLine.
func Decode(data []byte, out any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		return &root, nil // an empty file: every default
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, errors.New(strings.Join(te.Errors, "; "))
		}
		return nil, err
	}
	return &root, nil
}

var keyPathRE = regexp.MustCompile(`^([a-z0-9_]+(?:\[\d+\])?(?:\.[a-z0-9_]+(?:\[\d+\])?)*): `)

// WithLine prefixes a validation error whose text starts with a key path
// ("bus.stream.replicas: …") with the line of that key in the document,
// or of its closest present parent.
func WithLine(root *yaml.Node, err error) error {
	if err == nil || root == nil {
		return err
	}
	m := keyPathRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	if line := KeyLine(root, m[1]); line > 0 {
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// KeyLine returns the line of a key path such as "syslog.listeners[1].address"
// in the document, of its closest present parent when it is absent, or 0.
func KeyLine(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for part := range strings.SplitSeq(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
