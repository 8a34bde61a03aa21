package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"
	"time"
)

func runVersion(_ context.Context, args []string, e *env) error {
	fs := newFlagSet("version", e.stderr)
	if err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo() // nil without build info: printed as unknown
	printVersion(e.stdout, bi)
	return nil
}

// buildVersion is what printVersion shows, read from the build info.
type buildVersion struct {
	module, version          string
	revision, time, modified string
	revisionFrom             string // where revision came from, when not VCS stamping
	goVersion                string
}

// pseudoRE is a pseudo-version's tail: -yyyymmddhhmmss-abcdefabcdef
// (with an optional +incompatible), as go install pkg@version records it.
var pseudoRE = regexp.MustCompile(`[.-](\d{14})-([0-9a-f]{12})(\+incompatible)?$`)

func readVersion(bi *debug.BuildInfo) buildVersion {
	v := buildVersion{module: "unknown", version: "unknown", goVersion: runtime.Version()}
	if bi == nil {
		return v
	}
	v.module, v.version = bi.Main.Path, bi.Main.Version
	if v.module == "" { // a test binary or a GOPATH-less build
		v.module = "github.com/cnactor/cnactor"
	}
	if v.version == "" {
		v.version = "unknown"
	}
	if bi.GoVersion != "" {
		v.goVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.revision = s.Value
		case "vcs.time":
			v.time = s.Value
		case "vcs.modified":
			v.modified = s.Value
		}
	}
	// go install of a module version has no VCS stamp, but a
	// pseudo-version names its commit and time.
	if v.revision == "" {
		if m := pseudoRE.FindStringSubmatch(v.version); m != nil {
			v.revision, v.revisionFrom = m[2], "pseudo-version"
			if t, err := time.Parse("20060102150405", m[1]); err == nil {
				v.time = t.UTC().Format(time.RFC3339)
			}
		}
	}
	return v
}

func printVersion(w io.Writer, bi *debug.BuildInfo) {
	v := readVersion(bi)
	fmt.Fprintf(w, "cnctl %s\n", v.version)
	fmt.Fprintf(w, "module   %s\n", v.module)
	switch {
	case v.revision == "":
		fmt.Fprintln(w, "revision unknown (no VCS information: go run, go test, -buildvcs=false or a tagged module version)")
	case v.revisionFrom != "":
		fmt.Fprintf(w, "revision %s (from the %s)\n", v.revision, v.revisionFrom)
	default:
		fmt.Fprintf(w, "revision %s\n", v.revision)
	}
	if v.time != "" {
		fmt.Fprintf(w, "time     %s\n", v.time)
	}
	if v.modified != "" {
		fmt.Fprintf(w, "modified %s\n", v.modified)
	}
	fmt.Fprintf(w, "go       %s %s/%s\n", v.goVersion, runtime.GOOS, runtime.GOARCH)
}
