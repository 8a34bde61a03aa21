package config_test

import (
	"context"
	"fmt"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

const running = `
connector:
  mailbox: {size: 256, overflow: drop-newest}
supervisors:
  - name: workers
    strategy: one-for-all
    intensity: {max_restarts: 10, period: 10s}
callbacks:
  - id: "7:1"
    handler: echo
  - id: "7:2"
    name: counter
    handler: count
    supervisor: workers
    mailbox: {size: 64, overflow: drop-oldest}
`

// Parse checks a configuration; Config holds it as values.
func ExampleParse() {
	cfg, err := config.Parse("cnactor.yaml", []byte(running))
	if err != nil {
		panic(err)
	}
	fmt.Println("default mailbox:", cfg.Mailbox, cfg.Overflow)
	for _, s := range cfg.Supervisors {
		fmt.Println("supervisor", s.Name, s.Spec.Strategy, s.Spec.Intensity.MaxRestarts)
	}
	for _, cb := range cfg.Callbacks {
		fmt.Printf("callback %s name=%s handler=%s supervisor=%q mailbox=%d\n", cb.ID, cb.Name, cb.Handler, cb.Supervisor, cb.Mailbox)
	}

	// Errors name the file, the line and the field.
	_, err = config.Parse("bad.yaml", []byte("callbacks:\n  - id: \"7:1\"\n    handler: echo\n    restart: sometimes\n"))
	fmt.Println(err)
	// Output:
	// default mailbox: 256 drop-newest
	// supervisor workers one-for-all 10
	// callback 7:1 name=echo handler=echo supervisor="" mailbox=256
	// callback 7:2 name=counter handler=count supervisor="workers" mailbox=64
	// bad.yaml:4: callbacks[0].restart: unknown restart type "sometimes" (want permanent, transient or temporary)
}

// Apply runs a configuration on a connector built with its Options (here on
// the in-memory transport); Reload then moves it to another configuration
// by difference, notifying watchers as AddCallback and DelCallback do.
func ExampleApplied_Reload() {
	ctx := context.Background()
	cfg, _ := config.Parse("cnactor.yaml", []byte(running))
	conn, _ := memory.NewNetwork().Dial()
	c, _ := cnactor.New(append(cfg.Options(), cnactor.WithTransport(conn))...)
	defer c.Close(ctx)
	applied, changes, err := config.Apply(c, cfg, handlers.Env{})
	if err != nil {
		panic(err)
	}
	fmt.Println("apply:", changes)

	stop := c.Watch(func(e cnactor.Event) { fmt.Println(" ", e.Kind, e.ID, e.Name) })
	defer stop()
	next, _ := config.Parse("cnactor.yaml", []byte(`
connector:
  mailbox: {size: 256, overflow: drop-newest}
  batch_size: 16
supervisors:
  - name: workers
    strategy: one-for-all
    intensity: {max_restarts: 10, period: 10s}
callbacks:
  - id: "7:2"
    name: counter
    handler: count
    supervisor: workers
    mailbox: {size: 128, overflow: drop-oldest}
  - id: "8:1"
    handler: sink
`))
	changes, err = applied.Reload(next)
	fmt.Println("reload:", changes, err)
	h, _ := applied.Handler(transport.CbID{Idx: 8, Val: 1})
	fmt.Println("8:1 runs", h)
	// Output:
	// apply: added 7:1,7:2; supervisors added workers
	//   removed 7:1 echo
	//   removed 7:2 counter
	//   added 7:2 counter
	//   added 8:1 sink
	// reload: added 8:1; removed 7:1; changed 7:2; needs restart: connector.batch_size: running 64, configured 16 <nil>
	// 8:1 runs sink
}

// Apply builds every handler before adding anything: a configuration whose
// handler settings are wrong changes nothing. A good one serves at once.
func ExampleApply() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)

	bad, _ := config.Parse("bad.yaml", []byte(`
callbacks:
  - {id: "7:1", handler: echo}
  - {id: "7:2", handler: log, settings: {format: xml}}
`))
	_, _, err := config.Apply(c, bad, handlers.Env{})
	_, added := c.Callback(transport.CbID{Idx: 7, Val: 1})
	fmt.Println(err)
	fmt.Println("7:1 added:", added)

	good, _ := config.Parse("good.yaml", []byte(`callbacks: [{id: "7:1", handler: echo}]`))
	_, changes, _ := config.Apply(c, good, handlers.Env{})
	fmt.Println(changes)
	peer, _ := net.Dial()
	defer peer.Close()
	peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: transport.CbID{Idx: 7, Val: 1}, Data: []byte("hi")})
	b := transport.NewBatch(1)
	peer.ReceiveBatch(ctx, b)
	fmt.Printf("echo: %s\n", b.Messages[0].Data)
	// Output:
	// bad.yaml:4: callbacks[1].settings.format: unknown format "xml" (want text or json)
	// 7:1 added: false
	// added 7:1
	// echo: hi
}
