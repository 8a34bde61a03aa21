package main

import (
	"bufio"
	"fmt"
	"sort"

	"github.com/cnactor/cnactor/proc"
)

// procCounts are cnctl proc -stats: event counts per process name, as
// forkstat -S prints them. Names beyond maxCountedNames share one row.
type procCounts struct {
	form  proc.NameForm
	names map[string]*[nKinds]uint64
}

const (
	maxCountedNames = 4096
	otherNames      = "(other processes)"
)

var countKinds = [...]string{"fork", "clone", "exec", "exit", "coredump", "comm", "ptrace", "uid", "gid", "sid"}

const nKinds = len(countKinds)

var countHeads = [nKinds]string{"Fork", "Clone", "Exec", "Exit", "Core", "Comm", "Ptrce", "Uid", "Gid", "Sid"}

func newProcCounts(form proc.NameForm) *procCounts {
	return &procCounts{form: form, names: map[string]*[nKinds]uint64{}}
}

func (c *procCounts) add(ev proc.Event) {
	kind := proc.EventName(ev)
	k := -1
	for i, n := range countKinds {
		if n == kind {
			k = i
		}
	}
	if k < 0 {
		return // acks and losses
	}
	name := proc.Name(proc.ProcessOf(ev), c.form)
	if name == "" {
		name = "(unknown)"
	}
	row := c.names[name]
	if row == nil {
		if len(c.names) >= maxCountedNames {
			name = otherNames
			row = c.names[name]
		}
		if row == nil {
			row = new([nKinds]uint64)
			c.names[name] = row
		}
	}
	row[k]++
}

func (c *procCounts) print(w *bufio.Writer) {
	type row struct {
		name  string
		n     *[nKinds]uint64
		total uint64
	}
	rows := make([]row, 0, len(c.names))
	var sum [nKinds]uint64
	for name, n := range c.names {
		r := row{name: name, n: n}
		for i, v := range n {
			r.total += v
			sum[i] += v
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].total != rows[j].total {
			return rows[i].total > rows[j].total
		}
		return rows[i].name < rows[j].name
	})
	for _, h := range countHeads {
		fmt.Fprintf(w, "%7s ", h)
	}
	fmt.Fprintf(w, "%7s Process\n", "Total")
	line := func(n *[nKinds]uint64, total uint64, name string) {
		for _, v := range n {
			fmt.Fprintf(w, "%7d ", v)
		}
		fmt.Fprintf(w, "%7d %s\n", total, name)
	}
	var total uint64
	for _, r := range rows {
		line(r.n, r.total, r.name)
		total += r.total
	}
	line(&sum, total, "Total")
}
