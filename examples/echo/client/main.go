// Command client is the echo example's client: it sends requests to the
// echo server and waits for each reply, matched by the seed protocol
// (same id and seq, ack + 1, from the server's port).
//
//	go run ./examples/echo/client -id 7:1 -port PORT -n 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/transport"
)

func main() {
	idFlag := flag.String("id", "7:1", "callback id IDX:VAL the server serves")
	port := flag.Uint("port", 0, "the server's port id (printed by the server)")
	n := flag.Int("n", 5, "number of requests")
	flag.Parse()
	id, err := transport.ParseCbID(*idFlag)
	if err != nil {
		log.Fatal(err)
	}
	if *port == 0 {
		log.Fatal("-port is required: the echo server prints it")
	}
	c, err := cnactor.New()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	to := transport.Addr{Port: uint32(*port)}
	for i := range *n {
		m := &transport.Message{ID: id, Data: fmt.Appendf(nil, "hello %d", i)}
		// Seq comes from the connector, ack is random; a lost request or
		// reply is sent again (same seq and ack) twice before giving up.
		r, err := c.Request(context.Background(), to, m,
			cnactor.WithRequestTimeout(200*time.Millisecond), cnactor.WithRetries(2))
		switch {
		case errors.Is(err, cnactor.ErrTimeout):
			log.Fatalf("no reply to %q: is the server running on port %d?", m.Data, *port)
		case err != nil:
			log.Fatal(err)
		}
		fmt.Printf("reply %q seq=%d ack=%d from port %d in %v\n", r.Data, r.Seq, r.Ack, r.From, r.RTT)
	}
	st := c.Stats().Requester
	fmt.Printf("%d request(s), %d reply(s), %d retry(s)\n", st.Requests, st.Replies, st.Retries)
}
