package main

import (
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// Every command's help goes to stdout with status 0, whichever way it is
// asked for, and has a usage line, a description, flags with placeholders
// and an example.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "-help"}, {c.name, "--help"}, {"help", c.name}} {
			st, stdout, stderr := runCmd(t, args...)
			if st != 0 || stderr != "" {
				t.Errorf("cnctl %v: status %d, stderr %q", args, st, stderr)
				continue
			}
			if !strings.HasPrefix(stdout, "Usage: cnctl "+c.name) {
				t.Errorf("cnctl %v: no usage line first:\n%s", args, stdout)
			}
			if !strings.Contains(stdout, "\nExamples:\n  cnctl "+c.name) {
				t.Errorf("cnctl %v: no example:\n%s", args, stdout)
			}
			if d := docs[c.name]; d.summary == "" || len(d.about) < 40 {
				t.Errorf("%s: no summary or description", c.name)
			}
			// Go's flag package prints "value" for a flag without a
			// backquoted placeholder in its usage.
			if strings.Contains(stdout, " value\n") {
				t.Errorf("cnctl %v: a flag lacks its placeholder:\n%s", args, stdout)
			}
		}
	}
}

func TestHelpPlaceholders(t *testing.T) {
	for cmd, want := range map[string][]string{
		"send":    {"-id IDX:VAL\n", "-port PORT\n", "-group GROUP\n", "-data HEX\n", "-text TEXT\n"},
		"request": {"-id IDX:VAL\n", "-timeout DURATION\n", "-count N\n"},
		"listen":  {"-group GROUP\n", "-timeout DURATION\n"},
		"proc":    {"-pid PID\n", "-duration DURATION\n", "-events LIST\n", "-remote [HOST=]HOST:PORT,...\n"},
		"serve":   {"-config FILE\n", "-metrics HOST:PORT\n", "-export IDX:VAL,...\n"},
	} {
		_, stdout, _ := runCmd(t, cmd, "-h")
		for _, w := range want {
			if !strings.Contains(stdout, "  "+w) {
				t.Errorf("cnctl %s -h lacks %q:\n%s", cmd, w, stdout)
			}
		}
	}
}

// serve's help documents its stdin commands, the handlers this binary
// links and the configuration file.
func TestServeHelp(t *testing.T) {
	_, stdout, _ := runCmd(t, "serve", "-h")
	for _, w := range []string{
		"add IDX:VAL HANDLER [NAME] [senders=", "del IDX:VAL", "\n  list\n", "\n  reload\n", "\n  help\n",
		"Handlers: count, echo, flaky, log, proc, sink.", "Configuration file (-config FILE)", "SIGHUP",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("serve -h lacks %q:\n%s", w, stdout)
		}
	}
}

func TestCommandList(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"help"}} {
		st, stdout, stderr := runCmd(t, args...)
		if st != 0 || stderr != "" {
			t.Errorf("cnctl %v: status %d, stderr %q", args, st, stderr)
		}
		for _, c := range commands {
			if !regexp.MustCompile(`\n  ` + c.name + ` +\S`).MatchString(stdout) {
				t.Errorf("cnctl %v: %s is not listed with its summary:\n%s", args, c.name, stdout)
			}
		}
	}
	// A bare cnctl is a usage error, as the go command's.
	st, stdout, stderr := runCmd(t)
	if st != 2 || stdout != "" || !strings.Contains(stderr, "Commands:") {
		t.Errorf("cnctl: status %d, stdout %q, stderr %q", st, stdout, stderr)
	}
}

// Wrong flags and arguments: stderr, status 2, a one-line hint last.
func TestUsageHint(t *testing.T) {
	for _, args := range [][]string{
		{"send", "-nosuch"},
		{"send", "-port", "1"},
		{"listen", "extra"},
		{"serve", "-metrics"},
		{"proc", "-tree"},
		{"request", "-id", "7:1", "-port", "1", "-count", "0"},
		{"bench", "nosuch"},
		{"version", "extra"},
		{"frob"},
		{"help", "frob"},
	} {
		st, stdout, stderr := runCmd(t, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if st != 2 || stdout != "" || len(lines) < 2 || !regexp.MustCompile(`^Run 'cnctl .*' for `).MatchString(lines[len(lines)-1]) {
			t.Errorf("cnctl %v: status %d, stdout %q, stderr %q", args, st, stdout, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}} {
		st, stdout, stderr := runCmd(t, args...)
		if st != 0 || stderr != "" {
			t.Fatalf("cnctl %v: status %d, stderr %q", args, st, stderr)
		}
		for _, re := range []string{`^cnctl \S+\n`, `\nmodule   github.com/cnactor/cnactor\n`, `\nrevision \S+`, `\ngo       go1\.\d+\S* \w+/\w+\n$`} {
			if !regexp.MustCompile(re).MatchString(stdout) {
				t.Errorf("cnctl %v: no %s in\n%s", args, re, stdout)
			}
		}
	}
}

// What go build stamps, and what go install of a pseudo-version records.
func TestReadVersion(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cnactor/cnactor", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	v := readVersion(stamped)
	if v.version != "(devel)" || v.revision != "0123456789abcdef0123456789abcdef01234567" || v.time != "2026-01-02T03:04:05Z" ||
		v.modified != "true" || v.goVersion != "go1.26.0" || v.revisionFrom != "" {
		t.Errorf("stamped build: %+v", v)
	}
	installed := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cnactor/cnactor", Version: "v0.0.0-20260102030405-0123456789ab"}}
	v = readVersion(installed)
	if v.revision != "0123456789ab" || v.time != "2026-01-02T03:04:05Z" || v.revisionFrom != "pseudo-version" || v.modified != "" {
		t.Errorf("installed pseudo-version: %+v", v)
	}
	tagged := &debug.BuildInfo{Main: debug.Module{Path: "github.com/cnactor/cnactor", Version: "v1.2.3"}}
	if v = readVersion(tagged); v.version != "v1.2.3" || v.revision != "" {
		t.Errorf("tagged: %+v", v)
	}
	var b strings.Builder
	printVersion(&b, tagged)
	if !strings.Contains(b.String(), "revision unknown") {
		t.Errorf("tagged build prints %q", b.String())
	}
}

// A binary built in the repository with VCS stamping names its commit.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cnctl")
	}
	if err := exec.Command("git", "rev-parse", "HEAD").Run(); err != nil {
		t.Skip("not in a git work tree:", err)
	}
	bin := t.TempDir() + "/cnctl"
	// The environment may set GOFLAGS=-buildvcs=false; this build asks.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`\nrevision [0-9a-f]{40}\n`, `\ntime     \d{4}-\d\d-\d\dT`, `\nmodified (true|false)\n`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("no %s in\n%s", re, out)
		}
	}
}

// cnctl links no example: plugins are linked by their own programs.
func TestNoExamplesLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "/examples/") || strings.HasSuffix(p, "/examples") {
			t.Errorf("cnctl depends on %s", p)
		}
	}
}
