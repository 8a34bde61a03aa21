package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func startMetrics(t *testing.T, lim metricsLimits) (addr string, logs *observer.ObservedLogs) {
	t.Helper()
	conn, err := memory.NewNetwork().Dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	stderr := &syncBuffer{}
	core, logs := observer.New(zap.WarnLevel)
	stop, err := serveMetrics(c, "127.0.0.1:0", stderr, zap.New(core), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return waitOutput(t, stderr, regexp.MustCompile(`metrics on http://([^/]+)/metrics`))[1], logs
}

// get sends one keep-alive request on conn and reads its response.
func get(t *testing.T, conn net.Conn, r *bufio.Reader) {
	t.Helper()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// closedByServer waits until the server closes conn (EOF or reset),
// reading whatever it says before (a 408, say).
func closedByServer(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open (%v)", what, err)
	}
}

// Issue 13, item 11: an idle keep-alive connection, and a connection that
// never sends its request, are closed by the server.
func TestMetricsIdleAndReadTimeouts(t *testing.T) {
	lim := defaultMetricsLimits
	lim.IdleTimeout, lim.ReadTimeout = 50*time.Millisecond, 50*time.Millisecond
	addr, _ := startMetrics(t, lim)
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	get(t, idle, bufio.NewReader(idle)) // positive control: it serves
	closedByServer(t, idle, "idle keep-alive")
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	fmt.Fprintf(silent, "GET /metr") // half a request, then nothing
	closedByServer(t, silent, "half a request")
}

// Issue 13, item 11: connections past the bound are closed at once and
// counted; the server keeps serving those it admitted, and admits again
// once one goes.
func TestMetricsConnectionBound(t *testing.T) {
	lim := defaultMetricsLimits
	lim.MaxConns = 3
	addr, logs := startMetrics(t, lim)
	var held []net.Conn
	for range lim.MaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		get(t, c, bufio.NewReader(c)) // admitted: served
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	closedByServer(t, extra, "a connection over the bound")
	testutil.WaitFor(t, "the refusal logged", func() bool {
		return logs.FilterMessage("metrics connection refused: at the connection limit").FilterField(zap.Uint64("refused_total", 1)).Len() == 1
	})
	// One goes; a new one is admitted and served.
	held[0].Close()
	testutil.WaitFor(t, "a new connection served", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false // refused: the server has not seen the close yet
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}
