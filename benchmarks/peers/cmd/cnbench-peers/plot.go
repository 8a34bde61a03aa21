package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cnactor/cnactor/benchmarks"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// readResults reads `cnctl bench -json` lines from files.
func readResults(files []string) ([]benchmarks.Result, error) {
	var out []benchmarks.Result
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			var r benchmarks.Result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				fh.Close()
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			out = append(out, r)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var receiverColors = map[string]color.Color{
	benchmarks.NameRecvmmsg:  color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
	benchmarks.NameMdlayher:  color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	benchmarks.NameCnactor:   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	benchmarks.NameMemoryRaw: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// series collects one receiver's rate against x.
type series map[string]plotter.XYs

func (s series) add(name string, x, y float64) { s[name] = append(s[name], plotter.XY{X: x, Y: y}) }

func runPlot(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	dir := fs.String("dir", ".", "where to write throughput-handlers.{svg,png} and throughput-payload.{svg,png}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := readResults(fs.Args())
	if err != nil {
		return err
	}
	byHandlers, byPayload := series{}, series{}
	var machine benchmarks.Machine
	for _, r := range results {
		c := r.Config
		if c.Scenario != benchmarks.Throughput || c.Transport != benchmarks.Netlink || c.Mode != benchmarks.Unicast || c.Method != benchmarks.Drain {
			continue
		}
		machine = r.Machine
		for _, rr := range r.Receivers {
			if c.Payload == 64 {
				byHandlers.add(rr.Name, float64(c.Handlers), rr.Rate/1e6)
			}
			if c.Handlers == 1 {
				byPayload.add(rr.Name, float64(c.Payload), rr.Rate/1e6)
			}
		}
	}
	if len(byHandlers) == 0 && len(byPayload) == 0 {
		return errors.New("no netlink unicast throughput results to plot")
	}
	sub := fmt.Sprintf("%s, %d CPUs, Linux %s", machine.CPU, machine.CPUs, machine.Kernel)
	if err := draw2(byHandlers, "Throughput vs handlers (64-byte payloads, drain method)\n"+sub, "handlers (callback ids)", filepath.Join(*dir, "throughput-handlers")); err != nil {
		return err
	}
	return draw2(byPayload, "Throughput vs payload size (1 handler, drain method)\n"+sub, "payload bytes (log scale)", filepath.Join(*dir, "throughput-payload"))
}

func draw2(s series, title, xlabel, base string) error {
	if len(s) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "million messages per second"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min = 0
	p.Legend.Top = false
	p.Legend.Left = true
	p.Legend.YOffs = vg.Points(45)
	p.Add(plotter.NewGrid())
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		pts := s[n]
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := receiverColors[n]
		if c == nil {
			c = color.Black
		}
		l.Color, sc.Color = c, c
		l.Width = vg.Points(1.5)
		sc.Shape = draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(n, l, sc)
	}
	for _, ext := range []string{".svg", ".png"} {
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, base+ext); err != nil {
			return err
		}
	}
	return nil
}

// runTable prints Markdown tables of the results, one section per
// scenario.
func runTable(files []string, w io.Writer) error {
	results, err := readResults(files)
	if err != nil {
		return err
	}
	var tp, lat, ov, pr []benchmarks.Result
	for _, r := range results {
		switch r.Config.Scenario {
		case benchmarks.Throughput:
			tp = append(tp, r)
		case benchmarks.Latency:
			lat = append(lat, r)
		case benchmarks.Overload:
			ov = append(ov, r)
		case benchmarks.Proc:
			pr = append(pr, r)
		}
	}
	if len(tp) > 0 {
		fmt.Fprintln(w, "| transport | mode | method | handlers | payload | recvmmsg msg/s | mdlayher msg/s | cnactor msg/s | cnactor/recvmmsg | cnactor/mdlayher | cnactor allocs/msg | cnactor drops | books |")
		fmt.Fprintln(w, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range tp {
			c := r.Config
			rates := map[string]benchmarks.ReceiverResult{}
			for _, rr := range r.Receivers {
				rates[rr.Name] = rr
			}
			base := rates[benchmarks.NameRecvmmsg]
			if c.Transport == benchmarks.Memory {
				base = rates[benchmarks.NameMemoryRaw]
			}
			cn := rates[benchmarks.NameCnactor]
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %.3f | %d | %s |\n",
				c.Transport, c.Mode, c.Method, c.Handlers, c.Payload, rate(base.Rate), rate(rates[benchmarks.NameMdlayher].Rate), rate(cn.Rate),
				ratio(r.Ratios, benchmarks.NameRecvmmsg, benchmarks.NameMemoryRaw), ratio(r.Ratios, benchmarks.NameMdlayher), cn.AllocsPerMsg, cn.Drops, books(r))
		}
		fmt.Fprintln(w)
	}
	if len(lat) > 0 {
		fmt.Fprintln(w, "| transport | mode | in flight | raw p50 µs | raw p99 µs | raw/s | request p50 µs | request p99 µs | request/s | p50 ratio | books |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range lat {
			l := r.Latency
			if l == nil || len(l.Sides) < 2 {
				continue
			}
			a, b := l.Sides[0], l.Sides[len(l.Sides)-1] // the raw ping-pong, cnactor
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.1f | %s | %.1f | %.1f | %s | %.2fx | %s |\n", r.Config.Transport, r.Config.Mode, r.Config.InFlight,
				a.P50, a.P99, rate(a.Rate), b.P50, b.P99, rate(b.Rate), l.P50Ratio, books(r))
		}
		fmt.Fprintln(w)
	}
	if len(ov) > 0 {
		fmt.Fprintln(w, "| transport | mode | handlers | seconds | sent msg/s | RSS start MB | RSS max MB | stalled drops | running handlers msg/s | running min fraction | running mailbox drops | kernel drops | books |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range ov {
			o := r.Overload
			if o == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %s | %.1f | %.1f | %d | %s | %.4f | %d | %d | %s |\n", r.Config.Transport, r.Config.Mode, r.Config.Handlers,
				o.Seconds, rate(o.SentRate), float64(o.RSSStart)/1e6, float64(o.RSSMax)/1e6, o.StalledDrops, rate(o.OthersRate), o.OthersMinFraction,
				o.OthersMailboxDrops, o.KernelDrops, books(r))
		}
		fmt.Fprintln(w)
	}
	if len(pr) > 0 {
		fmt.Fprintln(w, "| processes | seconds | receiver | forks | execs | exits | missing | reported lost | note |")
		fmt.Fprintln(w, "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range pr {
			p := r.Proc
			if p == nil {
				continue
			}
			for _, x := range p.Receivers {
				fmt.Fprintf(w, "| %d | %.2f | %s | %d | %d | %d | %d | %d | %s |\n", p.Procs, p.Seconds, x.Name, x.Forks, x.Execs, x.Exits, x.Missing, x.Reported, x.Error)
			}
			for _, s := range p.Skipped {
				fmt.Fprintf(w, "| %d | | (not run) | | | | | | %s |\n", p.Procs, s)
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

func rate(v float64) string {
	if v == 0 {
		return "–"
	}
	if v >= 1e6 {
		return fmt.Sprintf("%.2f M", v/1e6)
	}
	return fmt.Sprintf("%.0f k", v/1e3)
}

func ratio(r map[string]float64, names ...string) string {
	for _, n := range names {
		if v, ok := r[benchmarks.NameCnactor+"/"+n]; ok {
			return fmt.Sprintf("%.2fx", v)
		}
	}
	return "–"
}

func books(r benchmarks.Result) string {
	for _, a := range r.Accounting {
		if !a.OK {
			return "**MISMATCH**"
		}
	}
	return "balanced"
}
