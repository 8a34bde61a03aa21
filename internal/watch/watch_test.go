package watch

import "testing"

func TestList(t *testing.T) {
	var l List[int]
	var a, b []int
	stopA := l.Add(func(v int) { a = append(a, v) })
	l.Add(func(v int) { b = append(b, v) })
	l.Emit(1)
	stopA()
	stopA() // twice is harmless
	l.Emit(2)
	if len(a) != 1 || a[0] != 1 || len(b) != 2 || b[1] != 2 {
		t.Fatalf("a=%v b=%v", a, b)
	}
}
