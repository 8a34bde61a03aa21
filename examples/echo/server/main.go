// Command server is the echo example's server: a connector core with one
// callback that answers every message with its own payload, as the seed
// protocol wants (same id and seq, ack + 1, back to the sender's port).
//
//	go run ./examples/echo/server -id 7:1
//
// It prints its port id; run the client with it (both need root or
// CAP_NET_ADMIN: they talk user to user through the kernel).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

func main() {
	idFlag := flag.String("id", "7:1", "callback id IDX:VAL to serve")
	flag.Parse()
	id, err := transport.ParseCbID(*idFlag)
	if err != nil {
		log.Fatal(err)
	}
	c, err := cnactor.New()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	echo := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		return ctx.Reply(m.Data) // m.Data is only lent to us; Reply sends it before returning
	})
	if err := c.AddCallback(id, "echo", echo); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo server: id %s on port %d; try:\n  go run ./examples/echo/client -id %s -port %d\n",
		id, c.Port(), id, c.Port())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if info, ok := c.Callback(id); ok {
		fmt.Printf("\nechoed %d message(s)\n", info.Handled)
	}
}
