// Package yamlconf decodes YAML configuration strictly, with errors that
// name the file, the line and the field: "config.yaml:12:
// callbacks[1].mailbox.overflow: unknown policy". Unknown fields, duplicate
// fields and values of the wrong type are errors.
//
// Decoding walks a yaml.Node tree with reflection into structs whose fields
// carry `yaml:"name"` tags; a field of type Place (tagged `yaml:"-"`)
// receives where its struct was, so that checks made after decoding can
// point at a field too. JSON is YAML, so the same decoder reads JSON bodies.
package yamlconf

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a configuration error at a place.
type Error struct {
	File  string // "" for text without a file (a request body): no location is printed
	Line  int    // 1-based; 0 if unknown
	Field string // the field's path, like callbacks[1].mailbox.overflow; "" for the whole text
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Join appends key to a field path: Join("a", "b") is "a.b", Join("", "b")
// is "b".
func Join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// Index appends an index to a field path: callbacks[1].
func Index(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// Parse parses data into a node tree. A syntax error names the file and the
// line. Empty text is an empty document (a nil node).
func Parse(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		line := 0
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		return nil, &Error{File: file, Line: line, Err: errors.New(msg)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// Decoder decodes nodes of one file.
type Decoder struct {
	File string
}

// Errorf returns an error located at n (which may be nil: no line).
func (d *Decoder) Errorf(n *yaml.Node, field, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.File, Line: line, Field: field, Err: fmt.Errorf(format, args...)}
}

// Unmarshaler is implemented by types that decode themselves from a node.
type Unmarshaler interface {
	UnmarshalYAMLNode(d *Decoder, n *yaml.Node, field string) error
}

// Place is where a mapping was in a file: decoding sets a struct's Place
// field, and checks made later use it to locate their errors.
type Place struct {
	d     *Decoder
	Node  *yaml.Node // the mapping; nil if the struct was absent from the file
	Field string     // the path of the struct's field
	line  int        // where the struct would have been, when Node is nil
}

// At is the Place of a struct at n (nil: absent), reported at line when
// absent.
func (d *Decoder) At(n *yaml.Node, field string, line int) Place {
	return Place{d: d, Node: n, Field: field, line: line}
}

// Line is the line of the mapping (or of where it would be).
func (p Place) Line() int {
	if p.Node != nil {
		return p.Node.Line
	}
	return p.line
}

// Value returns the value node of key in the mapping, or nil.
func (p Place) Value(key string) *yaml.Node {
	if p.Node == nil || p.Node.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(p.Node.Content); i += 2 {
		if p.Node.Content[i].Value == key {
			return p.Node.Content[i+1]
		}
	}
	return nil
}

// Has reports whether the mapping has key.
func (p Place) Has(key string) bool { return p.Value(key) != nil }

// Child is the Place of the value of key (absent: located at this mapping).
func (p Place) Child(key string) Place {
	return Place{d: p.d, Node: p.Value(key), Field: Join(p.Field, key), line: p.Line()}
}

// Errorf returns an error at key of the mapping ("" for the mapping
// itself): at the key's value if it is there, at the mapping otherwise.
func (p Place) Errorf(key, format string, args ...any) error {
	line := p.Line()
	field := p.Field
	if key != "" {
		field = Join(field, key)
		if v := p.Value(key); v != nil {
			line = v.Line
		}
	}
	file := ""
	if p.d != nil {
		file = p.d.File
	}
	return &Error{File: file, Line: line, Field: field, Err: fmt.Errorf(format, args...)}
}

// Decode decodes the node at this place into v, as Decoder.Decode.
func (p Place) Decode(v any) error {
	if p.Node == nil {
		return nil
	}
	d := p.d
	if d == nil {
		d = &Decoder{}
	}
	return d.Decode(p.Node, p.Field, v)
}

// Canonical is a text that is equal for equal values whatever their
// layout, comments or key order; "" for an absent node.
func (p Place) Canonical() string {
	if p.Node == nil {
		return ""
	}
	var v any
	if err := p.Node.Decode(&v); err != nil {
		return fmt.Sprintf("undecodable %p", p.Node)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.Encode(v) // maps come out with sorted keys
	enc.Close()
	return b.String()
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	placeType    = reflect.TypeFor[Place]()
	nodeType     = reflect.TypeFor[yaml.Node]()
)

// Decode decodes n into v, a non-nil pointer, strictly. A nil n leaves v
// as it is.
func (d *Decoder) Decode(n *yaml.Node, field string, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlconf: Decode needs a non-nil pointer, got %T", v)
	}
	if n == nil {
		return nil
	}
	return d.decode(n, field, rv.Elem())
}

func (d *Decoder) decode(n *yaml.Node, field string, v reflect.Value) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if v.CanAddr() {
		switch u := v.Addr().Interface().(type) {
		case Unmarshaler:
			return u.UnmarshalYAMLNode(d, n, field)
		case encoding.TextUnmarshaler:
			if n.Kind != yaml.ScalarNode {
				return d.Errorf(n, field, "want a single value, got %s", kindName(n))
			}
			if err := u.UnmarshalText([]byte(n.Value)); err != nil {
				return d.Errorf(n, field, "%v", err)
			}
			return nil
		}
	}
	switch v.Type() {
	case nodeType:
		v.Set(reflect.ValueOf(*n))
		return nil
	case durationType:
		if n.Kind != yaml.ScalarNode {
			return d.Errorf(n, field, "want a duration like 500ms or 5s, got %s", kindName(n))
		}
		t, err := time.ParseDuration(n.Value)
		if err != nil || t < 0 {
			return d.Errorf(n, field, "invalid duration %q (want a duration like 500ms or 5s)", n.Value)
		}
		v.SetInt(int64(t))
		return nil
	}
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		if v.Kind() == reflect.Struct {
			// An empty entry ("- " in a list) is an absent struct: its
			// Place still locates it, so that later checks name the line.
			if _, place := structFields(v.Type()); place >= 0 {
				v.Field(place).Set(reflect.ValueOf(Place{d: d, Field: field, line: n.Line}))
			}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, field, v.Elem())
	case reflect.Struct:
		return d.decodeStruct(n, field, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.Errorf(n, field, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := d.decode(e, Index(field, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("yamlconf: map keys must be strings in %s", v.Type())
		}
		if n.Kind != yaml.MappingNode {
			return d.Errorf(n, field, "want a mapping, got %s", kindName(n))
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(n.Content[i+1], Join(field, k), e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
		v.Set(m)
		return nil
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			return d.Errorf(n, field, "%v", err)
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.Errorf(n, field, "want a single value, got %s", kindName(n))
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			return d.Errorf(n, field, "want true or false, got %q", s)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			return d.Errorf(n, field, "want an integer of %d bits, got %q", v.Type().Bits(), s)
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			return d.Errorf(n, field, "want a non-negative integer of %d bits, got %q", v.Type().Bits(), s)
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return d.Errorf(n, field, "want a number, got %q", s)
		}
		v.SetFloat(x)
	default:
		return fmt.Errorf("yamlconf: cannot decode into %s", v.Type())
	}
	return nil
}

// fieldInfo is one decodable field of a struct.
type fieldInfo struct {
	key   string
	index int
}

func structFields(t reflect.Type) (fields []fieldInfo, place int) {
	place = -1
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type == placeType {
			place = i
			continue
		}
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields = append(fields, fieldInfo{key: name, index: i})
	}
	return fields, place
}

// FieldNames lists the keys a struct type accepts, for messages.
func FieldNames(t reflect.Type) []string {
	fields, _ := structFields(t)
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	sort.Strings(names)
	return names
}

func (d *Decoder) decodeStruct(n *yaml.Node, field string, v reflect.Value) error {
	fields, place := structFields(v.Type())
	if place >= 0 {
		v.Field(place).Set(reflect.ValueOf(Place{d: d, Node: n, Field: field, line: n.Line}))
	}
	if n.Kind != yaml.MappingNode {
		return d.Errorf(n, field, "want a mapping with fields %s, got %s", strings.Join(FieldNames(v.Type()), ", "), kindName(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key := kn.Value
		if kn.Kind == yaml.ScalarNode && kn.Tag == "!!merge" {
			return d.Errorf(kn, field, "merge keys (<<) are not supported")
		}
		if seen[key] {
			return d.Errorf(kn, Join(field, key), "field given twice")
		}
		seen[key] = true
		idx := -1
		for _, f := range fields {
			if f.key == key {
				idx = f.index
				break
			}
		}
		if idx < 0 {
			names := FieldNames(v.Type())
			if len(names) == 0 {
				return d.Errorf(kn, Join(field, key), "unknown field (this takes no fields)")
			}
			return d.Errorf(kn, Join(field, key), "unknown field (want %s)", strings.Join(names, ", "))
		}
		if err := d.decode(vn, Join(field, key), v.Field(idx)); err != nil {
			return err
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}
