package handlers

// The built-in handlers, registered by name. Handler packages outside this
// one (package proc, plugins) register themselves the same way.
func init() {
	Register("echo", noSettings(Echo))
	Register("sink", noSettings(Sink))
	Register("flaky", noSettings(Flaky))
	Register("count", noSettings(func() Handler { return new(Counter) }))
	Register("log", newLog)
}

// noSettings is the factory of a handler that takes no settings: any given
// is an error.
func noSettings(mk func() Handler) Factory {
	return func(s Settings) (Handler, error) {
		if err := s.Decode(&struct{}{}); err != nil {
			return nil, err
		}
		return mk(), nil
	}
}

// LogSettings are the settings of the "log" handler.
type LogSettings struct {
	// Format is text (the default) or json, as `cnctl listen` prints.
	Format string `yaml:"format"`
	// Output is stdout (the default) or stderr.
	Output string `yaml:"output"`
}

func newLog(s Settings) (Handler, error) {
	var ls LogSettings
	if err := s.Decode(&ls); err != nil {
		return nil, err
	}
	var asJSON bool
	switch ls.Format {
	case "", "text":
	case "json":
		asJSON = true
	default:
		return nil, s.Errorf("format", "unknown format %q (want text or json)", ls.Format)
	}
	w, ok := s.Output(ls.Output)
	if !ok {
		return nil, s.Errorf("output", "unknown output %q (want stdout or stderr)", ls.Output)
	}
	return Log(w, asJSON), nil
}
