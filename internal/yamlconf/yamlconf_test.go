package yamlconf

import (
	"testing"
	"time"
)

type inner struct {
	At   Place          `yaml:"-"`
	N    uint8          `yaml:"n"`
	Tags map[string]int `yaml:"tags"`
}

type outer struct {
	Name  string        `yaml:"name"`
	Wait  time.Duration `yaml:"wait"`
	Ratio float64       `yaml:"ratio"`
	On    bool          `yaml:"on"`
	Items []inner       `yaml:"items"`
	Any   any           `yaml:"any"`
	Skip  string        `yaml:"-"`
}

func decode(t *testing.T, file, text string) (outer, error) {
	t.Helper()
	n, err := Parse(file, []byte(text))
	if err != nil {
		return outer{}, err
	}
	var o outer
	err = (&Decoder{File: file}).Decode(n, "", &o)
	return o, err
}

func TestDecode(t *testing.T) {
	o, err := decode(t, "x.yaml", `
name: &n hello
wait: 1500ms
ratio: 0.5
on: true
items:
  - {n: 0x10, tags: {a: 1_000}}
  - n: 2
any: {k: [1, 2]}
`)
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "hello" || o.Wait != 1500*time.Millisecond || o.Ratio != 0.5 || !o.On || len(o.Items) != 2 ||
		o.Items[0].N != 16 || o.Items[0].Tags["a"] != 1000 || o.Any == nil {
		t.Fatalf("decoded %+v", o)
	}
	if o.Items[1].At.Line() != 8 || o.Items[1].At.Field != "items[1]" {
		t.Errorf("place = line %d field %s", o.Items[1].At.Line(), o.Items[1].At.Field)
	}
	if err := o.Items[1].At.Errorf("n", "too %s", "small"); err.Error() != "x.yaml:8: items[1].n: too small" {
		t.Errorf("Errorf = %v", err)
	}
	if err := o.Items[1].At.Errorf("tags", "missing"); err.Error() != "x.yaml:8: items[1].tags: missing" {
		t.Errorf("Errorf at an absent key = %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for text, want := range map[string]string{
		"items:\n  - n: 300\n":    "x.yaml:2: items[0].n: want a non-negative integer of 8 bits, got \"300\"",
		"on: yes\n":               "x.yaml:1: on: want true or false, got \"yes\"",
		"ratio: much\n":           "x.yaml:1: ratio: want a number, got \"much\"",
		"name: [a]\n":             "x.yaml:1: name: want a single value, got a list",
		"items: {n: 1}\n":         "x.yaml:1: items: want a list, got a mapping",
		"items:\n  - 3\n":         "x.yaml:2: items[0]: want a mapping with fields n, tags, got \"3\"",
		"items:\n  - tags: [1]\n": "x.yaml:2: items[0].tags: want a mapping, got a list",
		"skip: 1\n":               "x.yaml:1: skip: unknown field (want any, items, name, on, ratio, wait)",
		"a: &x {n: 1}\n<<: *x\n":  "x.yaml:1: a: unknown field (want any, items, name, on, ratio, wait)",
		"wait: -1s\n":             "x.yaml:1: wait: invalid duration \"-1s\" (want a duration like 500ms or 5s)",
		"name: a\nname: b\n":      "x.yaml:2: name: field given twice",
		"name: 'unterminated\n":   "x.yaml:2: found unexpected end of stream",
	} {
		_, err := decode(t, "x.yaml", text)
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", text, err, want)
		}
	}
}

func TestErrorWithoutFile(t *testing.T) {
	_, err := decode(t, "", "on: 2\n")
	if err == nil || err.Error() != `on: want true or false, got "2"` {
		t.Errorf("got %v", err)
	}
}

func TestCanonical(t *testing.T) {
	a, _ := Parse("a", []byte("x: {b: 1, a: [1, 2]} # c\n"))
	b, _ := Parse("b", []byte("x:\n  a: [1, 2]\n  b: 1\n"))
	c, _ := Parse("c", []byte("x: {a: [2, 1], b: 1}\n"))
	pa := (&Decoder{}).At(a, "", 1).Child("x")
	pb := (&Decoder{}).At(b, "", 1).Child("x")
	pc := (&Decoder{}).At(c, "", 1).Child("x")
	if pa.Canonical() != pb.Canonical() || pa.Canonical() == pc.Canonical() {
		t.Errorf("canonical: %q %q %q", pa.Canonical(), pb.Canonical(), pc.Canonical())
	}
	if (Place{}).Canonical() != "" || !pa.Has("a") || pa.Has("z") {
		t.Error("absent place")
	}
}
