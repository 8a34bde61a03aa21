package upper_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	_ "github.com/cnactor/cnactor/examples/plugin/upper"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// TestPluginFromConfig: the plugin registered itself; the example
// configuration picks it by name and it answers upper-cased.
func TestPluginFromConfig(t *testing.T) {
	cfg, err := config.Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, ch, err := config.Apply(c, cfg, handlers.Env{}); err != nil || ch.String() != "added 100:1,100:2; supervisors added plugins" {
		t.Fatalf("apply: %v, %v", ch, err)
	}
	peer, _ := net.Dial()
	defer peer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := transport.CbID{Idx: 100, Val: 1}
	for i, text := range []string{"hello", strings.Repeat("x", 2000), "bye"} {
		if err := peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: uint32(i + 1), Data: []byte(text)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	b := transport.NewBatch(1)
	for len(got) < 2 {
		if err := peer.ReceiveBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Messages {
			got = append(got, string(m.Data))
		}
	}
	if got[0] != "> HELLO" || got[1] != "> BYE" {
		t.Errorf("replies %q", got)
	}
	// The handler counts a reply once Reply has returned, which may be
	// after the peer has read it: wait for the count, then check it.
	var ci cnactor.CallbackInfo
	testutil.WaitFor(t, "the handled counter", func() bool {
		ci, _ = c.Callback(id)
		return ci.Handled+ci.Failed == 3
	})
	if ci.Failed != 1 || ci.Handler["replied"] != 2 {
		t.Errorf("counters: failed=%d own=%v (the 2000-byte message is over max_len)", ci.Failed, ci.Handler)
	}
}

func TestPluginSettingsErrors(t *testing.T) {
	for text, want := range map[string]string{
		"callbacks:\n  - id: \"1:2\"\n    handler: upper\n    settings: {max_len: 99999}\n":   `p.yaml:4: callbacks[0].settings.max_len: must be between 0 and 16384, got 99999`,
		"callbacks:\n  - id: \"1:2\"\n    handler: upper\n    settings:\n      shout: true\n": `p.yaml:5: callbacks[0].settings.shout: unknown field (want max_len, prefix)`,
	} {
		cfg, err := config.Parse("p.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handlers.New("upper", handlers.Settings{Source: cfg.Callbacks[0].Settings}); err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
}
