package config_test

import (
	"strings"
	"testing"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// FuzzParse: no file makes the parser panic; every error names the
// file; whatever it accepts is within the bounds the connector checks
// (sizes, ids, handlers, one document).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		fullConfig,
		"",
		"connector: {batch_size: 1024, receive_buffer: 1073741823, max_callbacks: 1}\n",
		"connector: {batch_size: 1025}\n",
		"callbacks:\n  - {id: \"7:1\", handler: echo, senders: kernel}\n---\ncallbacks: []\n",
		"callbacks:\n  - {id: \"0xffffffff:0xffffffff\", handler: echo}\n",
		"supervisors:\n  - {name: w, parent: root}\ncallbacks:\n  - {id: \"7:1\", handler: sink, supervisor: w, mailbox: {size: 4, overflow: drop-oldest}}\n",
		"callbacks:\n  - id: \"7:1\"\n    handler: echo\n  - id: \"7:1\"\n    handler: echo\n",
		"&a [*a]", "{", "- - -", "connector: !!binary AAAA",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := config.Parse("f.yaml", []byte(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if cfg.BatchSize < 0 || cfg.BatchSize > cnactor.MaxBatchSize || cfg.ReceiveBuffer < 0 || cfg.ReceiveBuffer > cnactor.MaxReadBuffer || cfg.MaxCallbacks < 0 {
			t.Fatalf("accepted out-of-bounds sizes: %+v", cfg)
		}
		ids := map[transport.CbID]bool{}
		for _, cb := range cfg.Callbacks {
			if ids[cb.ID] || cb.ID == dispatch.CoreID() {
				t.Fatalf("accepted id %v twice or the core's", cb.ID)
			}
			ids[cb.ID] = true
			if _, ok := handlers.Lookup(cb.Handler); !ok {
				t.Fatalf("accepted unknown handler %q", cb.Handler)
			}
			cb.Options() // must not panic
		}
		cfg.Options()
	})
}
