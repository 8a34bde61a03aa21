// Package config runs a cnactor.Connector from configuration files: the
// connector's settings, its supervisors and its callbacks, each callback's
// handler named by the registry (handlers.Register) and built with its own
// settings.
//
// Data flows from a YAML file to a running connector and, on reload, from
// the difference between two files to the callbacks that change:
//
//	file ──► Load / Parse ──► *Config ──┬─► Options() ──► cnactor.New
//	                                    └─► Apply ──► AddSupervisor, AddCallback
//	next file ──► Parse ──► Applied.Reload ──► DelCallback / AddCallback (only what changed)
//
// Load documents the format. Every error names the file, the line and the
// field. Apply and Reload build every handler before they add anything, so
// a bad setting changes nothing; settings that a running connector cannot
// change (its receive buffer, batch size, root supervisor) are reported in
// Changes.NeedsRestart rather than applied.
//
// This package imports the YAML parser; the root package does not, so a
// program that configures in code links none.
package config
